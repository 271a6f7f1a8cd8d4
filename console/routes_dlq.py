"""Dead letters and refused bodies: list, detail, replay after a confirmation.

The reading and replaying are :mod:`streams.dlq_tools` and
:mod:`ingress.replay_rejected`, the same code as the CLI's ``dlq`` and
``rejected replay``; every replay is audited before it runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request

from console import replays, users
from console.auth import allows
from console.deps import (
    ConsoleState,
    Csrf,
    CurrentUser,
    InvalidFilter,
    OperatorUser,
    State,
    client_addr,
    letter_position,
    page,
    since_param,
    state,
)
from console.replays import letter_state
from console.sealed_body import phi_body
from ingress.replay_rejected import replay_rejected
from spakinect_pipeline import audit
from spakinect_pipeline.publisher import PublishFailed
from streams.dlq_tools import DeadLetter, matches, read_dead_letters, replay, target_topic

router = APIRouter()
STATES = ("", "open", "replayed")
"""The list's state filter: any, open, or replayed (resolved included)."""
MAX_REPLAY = 500
"""Most dead letters one replay takes (each is read on its own)."""


async def _letters(st: State) -> list[DeadLetter]:
    return await read_dead_letters(st.kafka, idle_s=0.5)


async def _letter_at(st: State, partition: int, offset: int) -> DeadLetter | None:
    """The one dead letter at ``partition:offset`` (one message read, not the whole DLQ)."""
    f = await st.view.message_at(st.topics.dlq, partition, offset)
    if f is None:
        return None
    return DeadLetter(f.offset, f.partition, f.at, f.key, f.value, f.headers, list(f.raw_headers))


async def _audit(
    request: Request,
    user: users.User,
    action: str,
    target: str,
    details: Mapping[str, Any] | None = None,
) -> None:
    """An audit entry of this console user's action, from this client."""
    await audit.record(
        state(request).db,
        action,
        target,
        actor=f"console:{user.username}",
        client_addr=client_addr(request),
        details=details,
    )


@router.get("/dlq")
async def dlq_list(
    request: Request,
    st: ConsoleState,
    user: CurrentUser,
    stage: Annotated[str, Query(max_length=20)] = "",
    reason: Annotated[str, Query(max_length=100)] = "",
    since: Annotated[str, Query(max_length=40)] = "",
    state: Annotated[str, Query(max_length=20)] = "",
) -> Any:
    moment = since_param(since)
    if state not in STATES:
        raise InvalidFilter(f"state is {state!r}; it takes one of {', '.join(STATES)}.")
    letters = [
        x
        for x in await _letters(st)
        if matches(x, set(), moment, stage or None)
        and (not reason or x.headers.get("error_type") == reason)
    ]
    found = await replays.latest(st.db, st.topics.dlq)
    postgres = [x.event_id for x in letters if x.stage == "postgres" and x.event_id]
    written = await replays.written(st.db, postgres) if postgres else set()
    rows = [
        (x, letter_state(found.get((x.partition, x.offset)), x.stage, x.event_id in written))
        for x in letters
    ]
    if state:
        rows = [(x, s) for x, s in rows if (s.state == "open") == (state == "open")]
    return page(
        request,
        "dlq.html",
        user,
        rows=rows,
        stage=stage,
        reason=reason,
        since=since,
        state=state,
        open_count=sum(s.state == "open" for _, s in rows),
    )


@router.get("/dlq/{partition}/{offset}")
async def dlq_detail(
    request: Request, st: ConsoleState, user: CurrentUser, partition: int, offset: int
) -> Any:
    letter = await _letter_at(st, partition, offset)
    if letter is None:
        raise HTTPException(404, "no such dead letter")
    body = None
    if allows(user.role, "phi"):
        await _audit(
            request,
            user,
            "dlq.view-body",
            f"dlq:{partition}:{offset}",
            {"event_id": letter.event_id},
        )
        body = await phi_body(letter.value, st.sealed)  # sealed fields opened (phi only)
    return page(request, "dlq_detail.html", user, letter=letter, body=body)


@router.post("/dlq/replay", dependencies=[Csrf])
async def dlq_replay(
    request: Request,
    st: ConsoleState,
    user: OperatorUser,
    letter: Annotated[list[str], Form()],
    confirm: Annotated[str, Form()] = "",
) -> Any:
    """First POST shows what would be replayed; the second, with ``confirm=yes``, replays."""
    wanted = set(letter)
    positions = sorted({letter_position(x) for x in wanted})[:MAX_REPLAY]
    chosen = [x for p, o in positions if (x := await _letter_at(st, p, o)) is not None]
    if not chosen:
        raise HTTPException(404, "none of the selected dead letters is on the DLQ")
    if confirm != "yes":
        return page(request, "dlq_confirm.html", user, letters=chosen)
    target = f"dlq:{','.join(sorted(wanted))[:200]}"
    await _audit(request, user, "dlq.replay", target, {"event_ids": [x.event_id for x in chosen]})
    routable = [x for x in chosen if target_topic(x, st.topics) is not None]
    actor = f"console:{user.username}"
    await replays.record(
        st.db, st.topics.dlq, [x for x in chosen if x not in routable], actor, "no stage"
    )
    try:
        sent = await replay(st.kafka, routable, progress=False)
    except PublishFailed as exc:
        await replays.record(st.db, st.topics.dlq, routable, actor, "failed")
        await _audit(request, user, "dlq.replay.failed", target, {"error": type(exc).__name__})
        raise HTTPException(
            503,
            "Kafka did not take the replay: some of the letters may have gone, all are still "
            "on the DLQ; replaying them again is safe (the stages drop what they have).",
        ) from None
    await replays.record(st.db, st.topics.dlq, routable, actor, "sent")
    await _audit(request, user, "dlq.replay.done", target, {"sent": sent, "of": len(chosen)})
    return page(
        request,
        "done.html",
        user,
        message=f"Replayed {sent} of {len(chosen)} dead letter(s) to the stages that failed them;"
        " the list marks them replayed.",
    )


@router.get("/rejected")
async def rejected(request: Request, st: ConsoleState, user: CurrentUser) -> Any:
    counts = await replay_rejected(st.kafka, dry_run=True, idle_s=0.5)
    total = await st.view.count(st.topics.rejected)
    return page(request, "rejected.html", user, counts=sorted(counts.items()), total=total)


@router.post("/rejected/replay", dependencies=[Csrf])
async def rejected_replay(
    request: Request,
    st: ConsoleState,
    user: OperatorUser,
    confirm: Annotated[str, Form()] = "",
) -> Any:
    """Re-validate every kept refused body and publish those the models now accept."""
    if confirm != "yes":
        counts = await replay_rejected(st.kafka, dry_run=True, idle_s=0.5)
        return page(request, "rejected_confirm.html", user, counts=sorted(counts.items()))
    await _audit(request, user, "rejected.replay", f"topic:{st.topics.rejected}")
    counts = await replay_rejected(st.kafka, idle_s=0.5)
    await _audit(request, user, "rejected.replay.done", f"topic:{st.topics.rejected}", dict(counts))
    return page(
        request,
        "done.html",
        user,
        message=f"Published {counts['published']} body(ies), {counts['unrouted']} unrouted; "
        f"{sum(v for k, v in counts.items() if k.startswith('still_refused:'))} still refused.",
    )
