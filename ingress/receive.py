"""The webhook handler: the contract's checks in order, then publish, then answer.

Thin on purpose: the decisions live in :mod:`ingress.auth` and
:mod:`ingress.intake`; this module only reads the request and calls them.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog
from fastapi import Request
from fastapi.responses import JSONResponse, Response
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode, Tracer

from ingress import auth
from ingress.context import IngressContext
from ingress.intake import Accepted, Refused, Unrouted, decide
from ingress.outbound import outbound_for, rejected_message
from spakinect_pipeline.publisher import Headers, PublishFailed
from spakinect_pipeline.tracing import trace_headers

log = logging.getLogger(__name__)


class BodyTooLarge(Exception):
    pass


def error(
    status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    """A JSON error that names the problem and never echoes what was submitted."""
    return JSONResponse(
        {"error": code, "message": message, **extra}, status_code=status, headers=headers
    )


async def read_body(request: Request, limit: int) -> bytes:
    """Read at most ``limit`` bytes, refusing early on Content-Length or while streaming."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge
        chunks.append(chunk)
    return b"".join(chunks)


def _is_json(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type == "application/json"


def _authorize(request: Request, ctx: IngressContext) -> JSONResponse | None:
    """Steps 1 and 2: allowlist, then shared secret."""
    settings = ctx.settings
    if settings.allowed_cidrs:
        peer = request.client.host if request.client else None
        address = auth.client_address(
            peer, request.headers.get("x-forwarded-for"), settings.trusted_proxies
        )
        if not auth.address_allowed(address, settings.allowed_cidrs):
            ctx.metrics.auth_failures.labels("address").inc()
            return error(403, "forbidden", "client address is not allowed")
    if settings.shared_secret is not None:
        presented = auth.presented_secret(
            request.headers.get("authorization"), request.query_params.get("token")
        )
        if not auth.secret_matches(presented, settings.shared_secret):
            ctx.metrics.auth_failures.labels("secret").inc()
            return error(401, "unauthorized", "missing or wrong credentials")
    return None


async def receive(request: Request, ctx: IngressContext, expected_event: str | None) -> Response:
    """Handle one webhook POST; ``expected_event`` is None on ``/webhooks``."""
    if ctx.tracer is None:
        return await _receive(request, ctx, expected_event)
    return await _traced_receive(ctx.tracer, request, ctx, expected_event)


async def _traced_receive(
    tracer: Tracer, request: Request, ctx: IngressContext, expected_event: str | None
) -> Response:
    """The request as the root span of the delivery's trace; what it publishes carries it.

    A root, not a child of a ``traceparent`` the sender might send: the vendor
    sends none, and a public endpoint does not let callers pick our trace ids
    or sampling. Exceptions are recorded by class only (messages can quote data).
    """
    route = getattr(request.scope.get("route"), "path", "unmatched")
    with tracer.start_as_current_span(
        f"POST {route}",
        kind=SpanKind.SERVER,
        attributes={"http.request.method": "POST", "http.route": route},
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            response = await _receive(request, ctx, expected_event)
        except Exception as exc:
            span.set_attribute("error.type", type(exc).__name__)
            span.set_status(StatusCode.ERROR)
            raise
        span.set_attribute("http.response.status_code", response.status_code)
        if response.status_code >= 500:
            span.set_attribute("error.type", str(response.status_code))
            span.set_status(StatusCode.ERROR)
        return response


def _with_trace(ctx: IngressContext, headers: Headers, **attributes: str) -> Headers:
    """``headers`` plus the request span's context, which also gets ``attributes``."""
    if ctx.tracer is None:
        return headers
    trace.get_current_span().set_attributes(attributes)
    return [*headers, *trace_headers()]


async def _receive(request: Request, ctx: IngressContext, expected_event: str | None) -> Response:
    settings = ctx.settings
    refusal = _authorize(request, ctx)
    if refusal is not None:
        return refusal
    if not _is_json(request.headers.get("content-type")):
        return error(415, "unsupported_media_type", "Content-Type must be application/json")
    try:
        raw = await read_body(request, settings.max_body_bytes)
    except BodyTooLarge:
        return error(413, "body_too_large", f"body exceeds {settings.max_body_bytes} bytes")
    if settings.hmac_secrets:
        problem = auth.verify_signature(
            request.headers, raw, settings.hmac_secrets, settings.hmac_tolerance_s, time.time()
        )
        if problem is not None:
            ctx.metrics.auth_failures.labels("signature").inc()
            return error(401, "bad_signature", problem)

    received_at = datetime.now(UTC)
    decision = decide(raw, expected_event, int(received_at.timestamp() * 1000))
    try:
        if isinstance(decision, Refused):
            return await _keep_refused(ctx, decision, raw, request.url.path)
        return await _store(ctx, decision, received_at)
    except PublishFailed as exc:
        log.warning("publish failed: %s", exc, extra={"route": request.url.path})
        return error(
            503,
            "kafka_unavailable",
            "the event could not be stored; retry later",
            headers={"Retry-After": str(settings.retry_after_s)},
        )


def _budget_left(ctx: IngressContext, started: float) -> float:
    """What is left of ``INGRESS_PUBLISH_TIMEOUT_S`` after minting a key (sealing on): the
    key and the event share one budget, so the answer still comes within it."""
    return max(0.001, ctx.settings.publish_timeout_s - (time.perf_counter() - started))


async def _store(
    ctx: IngressContext, decision: Accepted | Unrouted, received_at: datetime
) -> Response:
    started = time.perf_counter()
    if ctx.sealer is None:
        message = outbound_for(decision, ctx.topics, received_at)
    else:  # minting a key first may raise PublishFailed: the same 503, nothing published
        message = await ctx.sealer.outbound(decision, ctx.topics, received_at)
    headers = _with_trace(
        ctx,
        message.headers,
        **{
            "spakinect.event": message.event,
            "spakinect.event_id": message.event_id,
            "messaging.destination.name": message.topic,
        },
    )
    publishing = time.perf_counter()
    await ctx.publisher.publish(
        message.topic,
        message.value,
        key=message.key,
        headers=headers,
        timeout=_budget_left(ctx, started),
    )
    ctx.metrics.published(message.topic, time.perf_counter() - publishing)
    answer: dict[str, Any] = {"received": True, "event_id": message.event_id}
    if message.routed:
        ctx.metrics.event_accepted(message.event)
        # Logged on the request's access line (ingress.app.AccessLog): one line per event.
        structlog.contextvars.bind_contextvars(event_id=message.event_id, topic=message.topic)
    else:
        ctx.metrics.unrouted.inc()
        answer["routed"] = False
        log.info("unrouted event kept", extra={"event_id": message.event_id})
    return Response(orjson.dumps(answer), media_type="application/json")


async def _keep_refused(ctx: IngressContext, refused: Refused, raw: bytes, route: str) -> Response:
    """Keep the refused body on the rejected topic first: a schema disagreement loses nothing.

    If it cannot be kept, the sender gets 503 and retries, rather than a 4xx
    that would make it give up on a body we no longer have.
    """
    now, started = datetime.now(UTC), time.perf_counter()
    if ctx.sealer is None:
        kept = rejected_message(refused, raw, route, ctx.topics, now)
    else:
        kept = await ctx.sealer.rejected(refused, raw, route, ctx.topics, now)
    await ctx.publisher.publish(
        kept.topic,
        kept.value,
        key=kept.key,
        headers=_with_trace(ctx, kept.headers, **{"spakinect.refused_reason": refused.reason}),
        timeout=_budget_left(ctx, started),
    )
    ctx.metrics.rejected.labels(refused.reason).inc()
    log.info("body refused", extra={"reason": refused.reason, "status": refused.status})
    extra: dict[str, Any] = {"fields": refused.fields} if refused.fields else {}
    return error(refused.status, refused.reason, refused.message, **extra)
