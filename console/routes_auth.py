"""Log in and out. Failed logins are throttled (console.throttle) and written to the audit log."""

from __future__ import annotations

import math
import secrets
import time
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse

from console import users
from console.auth import same
from console.deps import COOKIE, ConsoleState, Csrf, CurrentUser, client_addr, page
from console.labels import ANONYMOUS
from spakinect_pipeline import audit

router = APIRouter()
LOGIN_COOKIE = "console_login"  # double-submit token of the login form (no session yet)


def _login_page(request: Request, error: str | None = None, status: int = 200) -> Any:
    token = secrets.token_urlsafe(16)
    response = page(request, "login.html", None, status, error=error, login_token=token)
    response.set_cookie(
        LOGIN_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        max_age=900,
        secure=request.app.state.console.settings.secure_cookies,
    )
    return response


def _audit_target(name: str) -> str:
    """The typed user name only when it is one: a password typed in the wrong box is not kept."""
    return f"user:{name}" if users.USERNAME.match(name) else "user:(invalid)"


@router.get("/login")
async def login_form(request: Request) -> Any:
    return _login_page(request)


@router.post("/login")
async def login(
    request: Request,
    st: ConsoleState,
    username: Annotated[str, Form()],
    password: Annotated[str, Form()],
    login_token: Annotated[str, Form()] = "",
) -> Any:
    cookie = request.cookies.get(LOGIN_COOKIE, "")
    if not cookie or not same(cookie, login_token):
        return _login_page(request, "The form expired: please try again.", 403)
    addr, name = client_addr(request), username.strip().lower()
    target = _audit_target(name)
    now = time.monotonic()
    verdict = st.limiter.judge(addr, name, now)
    if verdict.refuse_s > 0:
        await audit.record(st.db, "login.limited", target, actor=ANONYMOUS, client_addr=addr)
        wait = math.ceil(verdict.refuse_s)
        message = (
            "Too many failed attempts at this user name from your address: "
            f"try again in {wait} s. Other addresses are not affected."
        )
        response = _login_page(request, message, 429)
        response.headers["Retry-After"] = str(wait)
        return response
    # Counted before the (slow) check, so parallel guesses cannot all slip past judge().
    st.limiter.failed(addr, name, now)
    if verdict.delay_s > 0:  # the name is being guessed (from elsewhere): slowed, not refused
        await anyio.sleep(verdict.delay_s)
    user = await users.verify(st.db, name, password)
    if user is None:
        await audit.record(st.db, "login.failed", target, actor=ANONYMOUS, client_addr=addr)
        return _login_page(request, "Wrong user name or password.", 401)
    st.limiter.succeeded(addr, name)
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(
        COOKIE,
        st.sessions.issue(user.username, user.generation),
        max_age=int(st.settings.session_ttl),
        httponly=True,
        samesite="strict",
        secure=st.settings.secure_cookies,
    )
    response.delete_cookie(LOGIN_COOKIE)
    return response


@router.post("/logout", dependencies=[Csrf])
async def logout(user: CurrentUser, st: ConsoleState) -> Any:
    """Ends every session of the user, including copies of this cookie kept elsewhere."""
    await users.end_sessions(st.db, user.username)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(COOKIE)
    return response
