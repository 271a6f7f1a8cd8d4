"""The ingress app factory: settings, publisher and metrics are built here, not at import."""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from opentelemetry.trace import Tracer
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from events.topics import Topics
from ingress.context import Ctx, IngressContext
from ingress.metrics import IngressMetrics, process_stopped
from ingress.router import WebhookDispatch, add_webhooks
from ingress.sealing import Sealer
from ingress.settings import IngressSettings
from spakinect_pipeline.config import KafkaSettings, load_settings
from spakinect_pipeline.phi.key_janitor import run_janitor
from spakinect_pipeline.phi.settings import PhiSettings
from spakinect_pipeline.publisher import KafkaPublisher, Publisher
from spakinect_pipeline.tracing import tracer_from_env

log = logging.getLogger(__name__)

READY_WITHIN_S = 30.0
METADATA_REFRESH_S = 10.0


# Fields a handler may bind for the request's access line (see AccessLog).
REQUEST_LOG_FIELDS = ("event_id", "topic")


class AccessLog:
    """Pure ASGI middleware: request id, in-flight gauge, one log line per request.

    Logs the path without the query string: the shared secret may travel as ``?token=``.
    The line also carries what the handler bound to the log context (the event id and
    topic of a stored event), so a stored event costs one line, not two.
    """

    def __init__(self, app: ASGIApp, metrics: IngressMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = os.urandom(8).hex()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        self.metrics.in_flight.inc()
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            self.metrics.in_flight.dec()
            route = scope.get("route")
            route_name = getattr(route, "path", "unmatched")
            self.metrics.request_done(route_name, status)
            log.info(
                "request",
                extra={
                    "method": scope["method"],
                    "path": scope["path"],
                    "status": status,
                    "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                },
            )
            structlog.contextvars.unbind_contextvars("request_id", *REQUEST_LOG_FIELDS)


async def _keep_metadata_fresh(ctx: IngressContext) -> None:
    raw_topics = ctx.topics.raw_topics()
    while True:
        await ctx.publisher.refresh_metadata(raw_topics)
        await asyncio.sleep(METADATA_REFRESH_S)


def _sealer(phi: PhiSettings, kafka: KafkaSettings, publisher: Publisher, timeout: float) -> Sealer:
    """``PHI_KAFKA_SEAL=on``: key minting publishes through the ingress's own producer."""

    async def send(topic: str, value: bytes, key: bytes) -> None:
        await publisher.publish(topic, value, key=key, timeout=timeout)

    return Sealer(kafka, phi.kafka_master(), phi.paths(), send)


def create_app(
    settings: IngressSettings | None = None,
    kafka: KafkaSettings | None = None,
    publisher: Publisher | None = None,
    tracer: Tracer | None = None,
    phi: PhiSettings | None = None,
) -> FastAPI:
    """Build the ingress. ``publisher`` may be swapped (benchmarks measure a no-op one).

    ``tracer`` defaults to the one the ``OTEL_*`` env configures (None: tracing off).
    With ``PHI_KAFKA_SEAL=on`` it needs ``PHI_KAFKA_MASTER_KEYS`` and ``PHI_INDEX_KEY``
    (a ConfigError here otherwise), never Postgres.
    """
    settings = settings or load_settings(IngressSettings)
    kafka = kafka or load_settings(KafkaSettings)
    phi = phi or load_settings(PhiSettings)
    metrics = IngressMetrics.create()
    publisher = publisher or KafkaPublisher(
        kafka, client_id="spakinect-ingress", linger_ms=settings.linger_ms
    )
    ctx = IngressContext(
        settings=settings,
        topics=Topics(kafka.topic_prefix),
        publisher=publisher,
        metrics=metrics,
        tracer=tracer or tracer_from_env("spakinect-ingress"),
        sealer=_sealer(phi, kafka, publisher, settings.publish_timeout_s)
        if phi.kafka_seal
        else None,
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if not settings.authenticated:
            log.warning(
                "INGRESS_ALLOW_UNAUTHENTICATED=true: anyone who reaches this port "
                "can post events; use only locally"
            )
        await ctx.publisher.start()
        tasks = [asyncio.create_task(_keep_metadata_fresh(ctx))]
        if ctx.sealer is not None:  # follow tombstones; destroy expired epoch keys hourly
            tasks.append(asyncio.create_task(ctx.sealer.follower.run()))
            tasks.append(asyncio.create_task(run_janitor(kafka, phi.unparsed_key_ttl)))
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await ctx.publisher.stop()
            # uvicorn ends a worker by re-raising SIGTERM (atexit never runs): its live
            # gauges leave the shared metrics folder here.
            process_stopped()

    app = FastAPI(
        title="spakinect-pipeline ingress",
        summary="Receives Spakinect webhooks and answers once they are durably in Kafka.",
        version="1",
        lifespan=lifespan,
        root_path=settings.root_path,
        # Our request span (ingress.receive) is the one: FastAPI's own would record the
        # query string, where the shared secret may travel as ?token=.
        telemetry={"tracing": False, "logs": False, "metrics": False, "auto_configure": False},
    )
    app.state.ctx = ctx
    # Added first, so it runs inside the access log (the last added is outermost).
    app.add_middleware(WebhookDispatch, ctx=ctx, webhooks=add_webhooks(app))
    app.add_middleware(AccessLog, metrics=metrics)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """200 while the process lives."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz(ctx: Ctx) -> JSONResponse:
        """200 when raw-topic metadata was fetched within the last 30 s, else 503."""
        last = ctx.publisher.last_metadata_ok
        ready = last is not None and time.monotonic() - last < READY_WITHIN_S
        body: dict[str, Any] = {"ready": ready}
        if not ctx.settings.authenticated:
            body["warning"] = "unauthenticated: INGRESS_ALLOW_UNAUTHENTICATED=true"
        return JSONResponse(body, status_code=200 if ready else 503)

    @app.get("/metrics")
    async def metrics_endpoint(request: Request, ctx: Ctx) -> Response:
        """Prometheus text; needs ``Authorization: Bearer <INGRESS_METRICS_TOKEN>`` when set."""
        token = ctx.settings.metrics_token
        if token is not None:
            presented = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(presented.encode(), token.get_secret_value().encode()):
                return JSONResponse({"error": "unauthorized"}, status_code=401)
        return Response(ctx.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return app


def uvicorn_options(settings: IngressSettings) -> dict[str, Any]:
    """How production runs the ingress: uvloop, httptools, our own access log."""
    return {
        "host": settings.host,
        "port": settings.port,
        "loop": "uvloop",
        "http": "httptools",
        "log_config": None,
        "access_log": False,
        "proxy_headers": False,
        "timeout_graceful_shutdown": int(settings.publish_timeout_s) + 5,
    }


def serve(app: FastAPI, settings: IngressSettings) -> None:
    """Run one ingress process the way production does (see :func:`uvicorn_options`)."""
    import uvicorn

    uvicorn.run(app, **uvicorn_options(settings))
