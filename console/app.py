"""The console's FastAPI app: routers, the lifespan that opens Postgres and Kafka, and serve()."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
from fastapi import FastAPI, Request, Response
from fastapi.staticfiles import StaticFiles

from console import errors, routes_auth, routes_dlq, routes_pages, routes_rejected
from console.auth import Sessions
from console.deps import State
from console.kafka_view import KafkaView
from console.settings import ConsoleSettings
from console.throttle import LoginThrottle
from events.topics import Topics
from sinks.email.settings import EmailSettings
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.phi.crypto import Keyring
from spakinect_pipeline.phi.kafka_client import SealedFields

log = logging.getLogger(__name__)
access = logging.getLogger("console.access")
SECURITY_HEADERS = {
    # Every asset is ours; no inline script can run even if some markup slipped through.
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; object-src 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def create_app(
    settings: ConsoleSettings,
    kafka: KafkaSettings,
    dsn: str,
    keyring: Keyring,
    email: EmailSettings,
    app_id: str,
    ingress_url: str | None = None,
    sealed: SealedFields | None = None,
) -> FastAPI:
    state = State(
        settings=settings,
        kafka=kafka,
        topics=Topics(kafka.topic_prefix),
        dsn=dsn,
        keyring=keyring,
        email=email,
        app_id=app_id,
        ingress_url=ingress_url,
        sessions=Sessions(settings.signing_key(), settings.session_ttl),
        limiter=LoginThrottle(
            settings.login_attempts,
            settings.login_window,
            settings.login_backoff,
            settings.login_max_delay,
        ),
        view=KafkaView(kafka),
        sealed=sealed,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.pool = await asyncpg.create_pool(dsn, min_size=1, max_size=4)
        await state.view.start()
        try:
            yield
        finally:
            await state.view.stop()
            await state.pool.close()

    app = FastAPI(
        title="spakinect console",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.console = state
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "static"), name="static")
    for module in (routes_auth, routes_pages, routes_rejected, routes_dlq):
        app.include_router(module.router)

    @app.middleware("http")
    async def headers_and_access_log(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        response.headers.update(SECURITY_HEADERS)
        # The path only: a query string is a search, and forms are never logged.
        access.info(
            f"{request.method} {request.url.path} {response.status_code}",
            extra={
                "client": request.client.host if request.client else None,
                "ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return response

    errors.install(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, bool]:
        return {"ok": True}

    return app


def serve(app: FastAPI, settings: ConsoleSettings) -> None:
    """Run on the console's own address, with our access log (paths, never query strings)."""
    import uvicorn

    log.info("console listening", extra={"bind": settings.bind})
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        log_config=None,
        access_log=False,
        # X-Forwarded-For is believed from these addresses only (none by default).
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or "",
        timeout_graceful_shutdown=10,
    )
