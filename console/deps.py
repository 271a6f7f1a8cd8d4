"""The console's shared state and request dependencies: who is asking, may they, CSRF."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import asyncpg
from fastapi import Depends, Form, HTTPException, Request
from fastapi.templating import Jinja2Templates

from console import users
from console.auth import Session, Sessions, allows, same
from console.kafka_view import KafkaView
from console.labels import actor_label, count_label, outcome_label
from console.settings import ConsoleSettings
from console.throttle import LoginThrottle
from console.timeline import Timelines
from events.topics import Topics
from sinks.email.settings import EmailSettings
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.phi.crypto import Keyring
from spakinect_pipeline.phi.kafka_client import SealedFields
from streams.dlq_tools import parse_since

COOKIE = "console_session"
templates = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


@dataclass
class State:
    """Everything a request needs, built once by :func:`console.app.create_app`."""

    settings: ConsoleSettings
    kafka: KafkaSettings
    topics: Topics
    dsn: str
    keyring: Keyring
    email: EmailSettings
    app_id: str
    ingress_url: str | None
    sessions: Sessions
    limiter: LoginThrottle
    view: KafkaView
    pool: asyncpg.Pool | None = None
    sealed: SealedFields | None = None  # opens sealed Kafka bodies for the phi role

    @property
    def db(self) -> asyncpg.Pool:
        assert self.pool is not None, "the console's lifespan opens the pool"
        return self.pool

    def timelines(self) -> Timelines:
        return Timelines(self.db, self.view, self.topics, self.app_id, self.email)


class LoginRequired(Exception):
    """No valid session: the handler redirects to the login page."""


class InvalidFilter(HTTPException):
    """A list page's filter that cannot be read: 400, the page says which and why."""

    def __init__(self, detail: str) -> None:
        super().__init__(400, f"This filter is invalid: {detail}")


def state(request: Request) -> State:
    found: State = request.app.state.console
    return found


def client_addr(request: Request) -> str:
    return request.client.host if request.client else "0.0.0.0"


async def current_user(request: Request) -> users.User:
    st = state(request)
    header = st.settings.trusted_proxy_header
    name: str | None = None
    if header:
        name = request.headers.get(header)
        if name:  # the proxy's user: its CSRF token is bound to the name, and expires
            request.state.session = Session(name.lower(), f"proxy:{name.lower()}")
    else:
        session = st.sessions.read(request.cookies.get(COOKIE))
        if session is not None:
            request.state.session = session
            name = session.username
    user = await users.get(st.db, name.lower()) if name else None
    if user is None:
        raise LoginRequired
    if not header and not same(request.state.session.generation, user.generation):
        raise LoginRequired  # logged out, or the password changed, since it was issued
    return user


CurrentUser = Annotated[users.User, Depends(current_user)]
ConsoleState = Annotated[State, Depends(state)]


def require(role: str) -> Any:
    async def check(user: CurrentUser) -> users.User:
        if not allows(user.role, role):
            raise HTTPException(
                403, f"Not allowed for your role ({user.role}): this needs the {role} role."
            )
        return user

    return Depends(check)


def csrf_token(request: Request) -> str:
    session: Session | None = getattr(request.state, "session", None)
    return state(request).sessions.csrf_token(session) if session else ""


async def checked_csrf(
    request: Request, user: CurrentUser, csrf: Annotated[str, Form()] = ""
) -> None:
    """Every POST echoes a CSRF token of its session made less than an hour ago.

    With a session cookie the token is bound to that session's random nonce;
    behind a trusted proxy there is no cookie, so it is bound to the user
    name, and its expiry is what limits a leaked token."""
    session: Session | None = getattr(request.state, "session", None)
    if session is None or not state(request).sessions.csrf_ok(session, csrf):
        raise HTTPException(403, "CSRF token missing or wrong: reload the page and try again")


Csrf = Depends(checked_csrf)


def letter_position(value: str) -> tuple[int, int]:
    """``partition:offset`` from a form's checkbox; 400 otherwise."""
    partition, sep, offset = value.partition(":")
    if not sep or not partition.isdecimal() or not offset.isdecimal():
        raise HTTPException(400, "choose messages by partition:offset, e.g. 0:42")
    return int(partition), int(offset)


def since_param(value: str) -> datetime | None:
    """A page's ``since`` filter: an ISO time or a duration back from now; 400 otherwise."""
    try:
        return parse_since(value or None, datetime.now(UTC))
    except ValueError:
        raise InvalidFilter(
            f"since is {value!r}; it takes an ISO time (2026-01-31T08:00) or a duration back"
            " from now (30m, 2h, 7d)."
        ) from None


OperatorUser = Annotated[users.User, require("operator")]
PhiUser = Annotated[users.User, require("phi")]
AdminUser = Annotated[users.User, require("admin")]


def page(
    request: Request, name: str, user: users.User | None, status: int = 200, **context: Any
) -> Any:
    """Render ``name`` with what every page shows (user, role, CSRF token)."""
    return templates.TemplateResponse(
        request,
        name,
        {
            "user": user,
            "csrf": csrf_token(request),
            "allows": allows,
            "count_label": count_label,
            "actor_label": actor_label,
            "outcome_label": outcome_label,
            **context,
        },
        status_code=status,
        headers={"Cache-Control": "no-store"},
    )
