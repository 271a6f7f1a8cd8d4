"""Error pages inside the normal page frame (navigation, user, Log out), saying what happened."""

from __future__ import annotations

import logging
from typing import Any

import asyncpg
from aiokafka.errors import KafkaError
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from starlette.exceptions import HTTPException

from console import users
from console.deps import InvalidFilter, LoginRequired, current_user, page
from console.kafka_view import KafkaUnreachable

log = logging.getLogger(__name__)
# What a lost Postgres looks like to asyncpg: refused, dropped, or shutting down.
POSTGRES_DOWN: tuple[type[Exception], ...] = (
    ConnectionError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.exceptions.OperatorInterventionError,
)
TITLES = {
    400: "Invalid request",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed",
    503: "Unavailable",
}


def title_for(exc: HTTPException) -> str:
    """The page's heading: what happened, in a word or three."""
    return (
        "Invalid filter" if isinstance(exc, InvalidFilter) else TITLES.get(exc.status_code, "Error")
    )


def message_for(status: int, detail: str, path: str) -> str:
    """Starlette's bare "Not Found" for a path no route serves says which path."""
    if status == 404 and detail == "Not Found":
        return f"There is no page at {path}."
    if status == 405:
        return f"{path} does not take that kind of request."
    return detail


async def optional_user(request: Request) -> users.User | None:
    """Who is asking, when that can be told: the frame then shows their navigation."""
    try:
        return await current_user(request)
    except (LoginRequired, *POSTGRES_DOWN, asyncpg.PostgresError):
        return None


async def error_page(request: Request, status: int, message: str, title: str) -> Any:
    user = await optional_user(request) if status != 503 else None
    return page(request, "error.html", user, status, message=message, title=title)


def install(app: FastAPI) -> None:
    """The exception handlers: login redirect, HTTP errors, bad forms, Kafka or Postgres down."""

    @app.exception_handler(LoginRequired)
    async def to_login(request: Request, exc: LoginRequired) -> Response:
        return RedirectResponse("/login", status_code=303)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> Any:
        message = message_for(exc.status_code, str(exc.detail), request.url.path)
        return await error_page(request, exc.status_code, message, title_for(exc))

    @app.exception_handler(RequestValidationError)
    async def invalid_form(request: Request, exc: RequestValidationError) -> Any:
        fields = sorted({".".join(str(x) for x in e["loc"][1:]) for e in exc.errors()})
        message = f"invalid: {', '.join(fields)}"
        return await error_page(request, 400, message, "Invalid request")

    async def unreachable(request: Request, part: str) -> Any:
        log.warning(f"{part} unreachable", extra={"path": request.url.path})
        message = f"{part} unreachable: this page needs it; try again in a minute."
        user = await optional_user(request) if part == "Kafka" else None
        return page(request, "error.html", user, 503, message=message, title="Unavailable")

    async def kafka_down(request: Request, exc: Exception) -> Any:
        return await unreachable(request, "Kafka")

    async def postgres_down(request: Request, exc: Exception) -> Any:
        return await unreachable(request, "Postgres")

    for kafka_error in (KafkaUnreachable, KafkaError):
        app.add_exception_handler(kafka_error, kafka_down)
    for pg_error in POSTGRES_DOWN:
        app.add_exception_handler(pg_error, postgres_down)
