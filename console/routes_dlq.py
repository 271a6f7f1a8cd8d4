"""Dead letters and refused bodies: list, detail, replay after a confirmation.

The reading and replaying are :mod:`streams.dlq_tools` and
:mod:`ingress.replay_rejected`, the same code as the CLI's ``dlq`` and
``rejected replay``; every replay is audited before it runs.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request

from console.auth import allows
from console.deps import ConsoleState, Csrf, CurrentUser, OperatorUser, State, client_addr, page
from ingress.replay_rejected import replay_rejected
from spakinect_pipeline import audit
from streams.dlq_tools import DeadLetter, matches, parse_since, read_dead_letters, replay

router = APIRouter()


async def _letters(st: State) -> list[DeadLetter]:
    return await read_dead_letters(st.kafka, idle_s=0.5)


def _since(value: str) -> datetime | None:
    try:
        return parse_since(value or None, datetime.now(UTC))
    except ValueError:
        raise HTTPException(400, "since: an ISO time or a duration such as 2h or 7d") from None


@router.get("/dlq")
async def dlq_list(
    request: Request,
    st: ConsoleState,
    user: CurrentUser,
    stage: Annotated[str, Query(max_length=20)] = "",
    reason: Annotated[str, Query(max_length=100)] = "",
    since: Annotated[str, Query(max_length=40)] = "",
) -> Any:
    moment = _since(since)
    letters = [
        x
        for x in await _letters(st)
        if matches(x, set(), moment, stage or None)
        and (not reason or x.headers.get("error_type") == reason)
    ]
    return page(request, "dlq.html", user, letters=letters, stage=stage, reason=reason, since=since)


@router.get("/dlq/{partition}/{offset}")
async def dlq_detail(
    request: Request, st: ConsoleState, user: CurrentUser, partition: int, offset: int
) -> Any:
    letter = next(
        (x for x in await _letters(st) if (x.partition, x.offset) == (partition, offset)), None
    )
    if letter is None:
        raise HTTPException(404, "no such dead letter")
    body = None
    if allows(user.role, "phi"):
        await audit.record(
            st.db,
            "dlq.view-body",
            f"dlq:{partition}:{offset}",
            actor=f"console:{user.username}",
            client_addr=client_addr(request),
            details={"event_id": letter.event_id},
        )
        body = (letter.value or b"").decode("utf-8", "replace")
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
    chosen = [x for x in await _letters(st) if f"{x.partition}:{x.offset}" in wanted]
    if not chosen:
        raise HTTPException(404, "none of the selected dead letters is on the DLQ")
    if confirm != "yes":
        return page(request, "dlq_confirm.html", user, letters=chosen)
    await audit.record(
        st.db,
        "dlq.replay",
        f"dlq:{','.join(sorted(wanted))[:200]}",
        actor=f"console:{user.username}",
        client_addr=client_addr(request),
        details={"event_ids": [x.event_id for x in chosen]},
    )
    sent = await replay(st.kafka, chosen, progress=False)
    return page(
        request,
        "done.html",
        user,
        message=f"Replayed {sent} of {len(chosen)} dead letter(s) to the stages that failed them.",
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
    await audit.record(
        st.db,
        "rejected.replay",
        f"topic:{st.topics.rejected}",
        actor=f"console:{user.username}",
        client_addr=client_addr(request),
    )
    counts = await replay_rejected(st.kafka, idle_s=0.5)
    return page(
        request,
        "done.html",
        user,
        message=f"Published {counts['published']} body(ies), {counts['unrouted']} unrouted; "
        f"{sum(v for k, v in counts.items() if k.startswith('still_refused:'))} still refused.",
    )
