"""Refused bodies one by one: a filtered list, and a detail page (the body to ``phi`` only).

The bodies are the vendor's own, patient data included, so the list shows
only the ingress's headers (why it was refused, when) and what today's
models say of it (:func:`ingress.intake.decide`, the same check as
``rejected replay``); the body itself is shown to the ``phi`` role, audited.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request

from console.auth import allows
from console.deps import (
    ConsoleState,
    Csrf,
    CurrentUser,
    OperatorUser,
    client_addr,
    letter_position,
    page,
    since_param,
)
from console.kafka_view import Found
from console.labels import reason_label
from console.refused import Shown, shown
from ingress.intake import Refused, decide
from ingress.replay_rejected import replay_selected
from spakinect_pipeline import audit

router = APIRouter()
PER_PARTITION = 500
"""Newest refused bodies listed per partition."""
MAX_SELECTED = 500
"""Most refused bodies one replay takes."""


def verdict(found: Found, now_ms: int) -> str:
    """What today's models say of a kept body: ``accepted now`` or ``still refused: <reason>``."""
    decision = decide(found.value or b"", None, now_ms)
    if isinstance(decision, Refused):
        return f"still refused: {reason_label(decision.reason)}"
    return "accepted now"


@router.get("/rejected/list")
async def rejected_list(
    request: Request,
    st: ConsoleState,
    user: CurrentUser,
    reason: Annotated[str, Query(max_length=100)] = "",
    since: Annotated[str, Query(max_length=40)] = "",
) -> Any:
    moment = since_param(since)
    await st.view.check()
    rows: list[tuple[Found, str, Shown]] = []
    now_ms = int(time.time() * 1000)
    for tp in await st.view.partitions(st.topics.rejected):
        end = await st.view.offset_at(tp.topic, tp.partition, 2**62)
        start = max(await st.view.beginning(tp.topic, tp.partition), end - PER_PARTITION)
        for found in await st.view.read(tp.topic, tp.partition, start, limit=PER_PARTITION):
            if reason and found.headers.get("reason") != reason:
                continue
            if moment is not None and found.at < moment:
                continue
            kept = shown(found.value or b"", found.headers.get("fields", ""), now_ms)
            rows.append((found, verdict(found, now_ms), kept))
    rows.sort(key=lambda row: row[0].at, reverse=True)
    return page(
        request,
        "rejected_list.html",
        user,
        rows=rows,
        reason=reason,
        since=since,
        limit=PER_PARTITION,
    )


@router.post("/rejected/replay-selected", dependencies=[Csrf])
async def rejected_replay_selected(
    request: Request,
    st: ConsoleState,
    user: OperatorUser,
    item: Annotated[list[str], Form()],
    confirm: Annotated[str, Form()] = "",
) -> Any:
    """First POST shows the chosen bodies' verdicts; the second, with ``confirm=yes``,
    publishes those today's models accept (as ``rejected replay`` does)."""
    await st.view.check()
    chosen: list[Found] = []
    for position in sorted(set(item))[:MAX_SELECTED]:
        partition, offset = letter_position(position)
        found = await st.view.message_at(st.topics.rejected, partition, offset)
        if found is not None:
            chosen.append(found)
    if not chosen:
        raise HTTPException(404, "none of the selected refused bodies is kept")
    now_ms = int(time.time() * 1000)
    if confirm != "yes":
        rows = [(f, verdict(f, now_ms)) for f in chosen]
        return page(request, "rejected_selected.html", user, rows=rows)
    target = "rejected:" + ",".join(f"{f.partition}:{f.offset}" for f in chosen)[:200]
    actor = f"console:{user.username}"
    await audit.record(
        st.db, "rejected.replay", target, actor=actor, client_addr=client_addr(request)
    )
    counts = await replay_selected(st.kafka, [(f.value or b"", f.raw_headers) for f in chosen])
    await audit.record(
        st.db,
        "rejected.replay.done",
        target,
        actor=actor,
        client_addr=client_addr(request),
        details=dict(counts),
    )
    still = sum(v for k, v in counts.items() if k.startswith("still_refused:"))
    message = (
        f"Published {counts['published']} body(ies), {counts['unrouted']} unrouted; "
        f"{still} still refused."
    )
    return page(request, "done.html", user, message=message)


@router.get("/rejected/{partition}/{offset}")
async def rejected_detail(
    request: Request, st: ConsoleState, user: CurrentUser, partition: int, offset: int
) -> Any:
    await st.view.check()
    found = await st.view.message_at(st.topics.rejected, partition, offset)
    if found is None:
        raise HTTPException(404, "no such refused body")
    body = None
    if allows(user.role, "phi"):
        await audit.record(
            st.db,
            "rejected.view-body",
            f"rejected:{partition}:{offset}",
            actor=f"console:{user.username}",
            client_addr=client_addr(request),
        )
        body = (found.value or b"").decode("utf-8", "replace")
    now_ms = int(time.time() * 1000)
    return page(
        request,
        "rejected_detail.html",
        user,
        found=found,
        verdict=verdict(found, now_ms),
        body=body,
    )
