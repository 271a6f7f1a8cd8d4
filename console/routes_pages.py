"""Overview, lookup (with the audited reveal of patient data), users and the audit log."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Form, HTTPException, Query, Request

from console import users
from console.deps import (
    AdminUser,
    ConsoleState,
    Csrf,
    CurrentUser,
    PhiUser,
    client_addr,
    page,
    since_param,
)
from console.mask import mask_patient
from console.not_received import checks, raw_window, read_what
from console.overview import gather
from console.timeline import KINDS
from events.registry import state_table
from sinks.postgres.protect import open_visit
from spakinect_pipeline import audit

router = APIRouter()


@router.get("/")
async def overview(request: Request, st: ConsoleState, user: CurrentUser) -> Any:
    data = await gather(st.view, st.db, st.topics, st.app_id, st.ingress_url)
    return page(request, "overview.html", user, o=data)


async def _lookup(
    request: Request, st: ConsoleState, user: users.User, kind: str, q: str, revealed: str | None
) -> Any:
    q = q.strip()
    if kind not in KINDS:
        raise HTTPException(400, f"kind must be one of {', '.join(KINDS)}")
    timelines = st.timelines()
    results = []
    if q:
        await st.view.check()
        only = q if kind == "event_id" else None
        for event, entity in await timelines.entities(kind, q):
            visit = await timelines.visit(entity) if state_table(event) == "gfe_visits" else None
            deliveries = await timelines.deliveries(event, entity, only)
            if not deliveries and visit is None:
                window = await raw_window(st.view, st.topics, event, entity)
                results.append(
                    {"missing": True, "read": read_what(window), "checks": checks(kind, window)}
                )
                continue
            patient = None
            if visit is not None and visit["phi_redacted_at"] is None:
                plain = open_visit(visit, st.keyring)
                patient = plain if revealed == entity else mask_patient(plain)
            results.append(
                {
                    "event": event,
                    "entity": entity,
                    "visit": visit,
                    "patient": patient,
                    "revealed": revealed == entity,
                    "deliveries": deliveries,
                }
            )
    return page(request, "lookup.html", user, kind=kind, q=q, kinds=KINDS, results=results)


@router.get("/lookup")
async def lookup(
    request: Request,
    st: ConsoleState,
    user: CurrentUser,
    kind: Annotated[str, Query()] = "gfe_id",
    q: Annotated[str, Query(max_length=300)] = "",
) -> Any:
    return await _lookup(request, st, user, kind, q, None)


@router.post("/lookup/reveal", dependencies=[Csrf])
async def reveal(
    request: Request,
    st: ConsoleState,
    user: PhiUser,
    gfe_id: Annotated[str, Form(max_length=300)],
    reason: Annotated[str, Form(max_length=500)] = "",
) -> Any:
    """Show one visit's patient in clear: needs a reason, and is audited before it is shown."""
    if len(reason.strip()) < 4:
        raise HTTPException(400, "a reason is needed to reveal patient data")
    await audit.record(
        st.db,
        "phi.reveal",
        f"gfe:{gfe_id}",
        actor=f"console:{user.username}",
        reason=reason.strip(),
        client_addr=client_addr(request),
    )
    return await _lookup(request, st, user, "gfe_id", gfe_id, gfe_id)


@router.get("/audit")
async def audit_log(
    request: Request,
    st: ConsoleState,
    user: AdminUser,
    action: Annotated[str, Query(max_length=100)] = "",
    since: Annotated[str, Query(max_length=40)] = "",
    target: Annotated[str, Query(max_length=300)] = "",
) -> Any:
    moment = since_param(since)
    found = await audit.entries(
        st.db, action=action or None, since=moment, target=target or None, limit=500
    )
    return page(
        request, "audit.html", user, entries=found, action=action, since=since, target=target
    )


@router.get("/users")
async def user_list(request: Request, st: ConsoleState, user: AdminUser) -> Any:
    return page(request, "users.html", user, users=await users.listing(st.db))
