"""Refused bodies one by one: a filtered list, and a detail page (the body to ``phi`` only).

The bodies are the vendor's own, patient data included, so the list shows
only the ingress's headers (why it was refused, when) and what today's
models say of it (:func:`ingress.intake.decide`, the same check as
``rejected replay``); the body itself is shown to the ``phi`` role, audited.
A body kept sealed is opened with the key topic (read once per page, only when
a sealed body is on it); one whose epoch key is gone says it is no longer readable.
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
from console.refused import Shown, kept_body, shown
from ingress.intake import Refused, decide
from ingress.replay_rejected import is_sealed, key_lookup, replay_selected
from spakinect_pipeline import audit
from spakinect_pipeline.config import ConfigError, KafkaSettings
from spakinect_pipeline.phi.unparsed import Lookup

router = APIRouter()
PER_PARTITION = 500
"""Newest refused bodies listed per partition."""
MAX_SELECTED = 500
"""Most refused bodies one replay takes."""


async def lookup_for(kafka: KafkaSettings, found: list[Found]) -> Lookup | None:
    """The data keys, when a sealed body is among ``found`` and this console has the master key."""
    if not any(is_sealed(f.raw_headers) for f in found):
        return None
    try:
        return await key_lookup(kafka)
    except ConfigError:
        return None  # kept_body says the console cannot open it


def verdict(found: Found, now_ms: int, lookup: Lookup | None = None) -> str:
    """What today's models say of a kept body: ``accepted now``, ``still refused: <reason>``
    or why a sealed one cannot be read any more."""
    body = kept_body(found.value or b"", found.raw_headers, lookup)
    if isinstance(body, str):
        return body
    decision = decide(body, None, now_ms)
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
    listed: list[Found] = []
    now_ms = int(time.time() * 1000)
    for tp in await st.view.partitions(st.topics.rejected):
        end = await st.view.offset_at(tp.topic, tp.partition, 2**62)
        start = max(await st.view.beginning(tp.topic, tp.partition), end - PER_PARTITION)
        for found in await st.view.read(tp.topic, tp.partition, start, limit=PER_PARTITION):
            if reason and found.headers.get("reason") != reason:
                continue
            if moment is not None and found.at < moment:
                continue
            listed.append(found)
    lookup = await lookup_for(st.kafka, listed)
    rows: list[tuple[Found, str, Shown]] = []
    for found in listed:
        body = kept_body(found.value or b"", found.raw_headers, lookup)
        kept = shown(
            body if isinstance(body, bytes) else b"", found.headers.get("fields", ""), now_ms
        )
        rows.append((found, verdict(found, now_ms, lookup), kept))
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
        lookup = await lookup_for(st.kafka, chosen)
        rows = [(f, verdict(f, now_ms, lookup)) for f in chosen]
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
    if counts["unreadable"]:
        message += f" {counts['unreadable']} no longer readable (epoch key expired or destroyed)."

    return page(request, "done.html", user, message=message)


@router.get("/rejected/{partition}/{offset}")
async def rejected_detail(
    request: Request, st: ConsoleState, user: CurrentUser, partition: int, offset: int
) -> Any:
    await st.view.check()
    found = await st.view.message_at(st.topics.rejected, partition, offset)
    if found is None:
        raise HTTPException(404, "no such refused body")
    lookup = await lookup_for(st.kafka, [found])
    kept = kept_body(found.value or b"", found.raw_headers, lookup)
    body = None
    if allows(user.role, "phi") and isinstance(kept, bytes):
        await audit.record(
            st.db,
            "rejected.view-body",
            f"rejected:{partition}:{offset}",
            actor=f"console:{user.username}",
            client_addr=client_addr(request),
        )
        body = kept.decode("utf-8", "replace")
    now_ms = int(time.time() * 1000)
    return page(
        request,
        "rejected_detail.html",
        user,
        found=found,
        verdict=verdict(found, now_ms, lookup),
        body=body,
        unreadable=kept if isinstance(kept, str) else None,
    )
