"""The console's test fixtures: users of every role, a console process (and one with a 2 s
session TTL), Debian's chromium driven by Playwright (never a downloaded browser), logins."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from devstack.process import ManagedProcess, free_port
from devstack.stack import http_ok, pipeline_process

if TYPE_CHECKING:  # conftest imports these fixtures
    from .conftest import Pipeline

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "correct horse battery staple"
ROLES = ("viewer", "operator", "phi", "admin")
CLI = [sys.executable, "-m", "cli.main"]


@dataclass
class Console:
    url: str
    short_url: str  # the same console with a 2 s session TTL


def run_cli(env: dict[str, str], *args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], input=stdin, env=env, capture_output=True, text=True, timeout=60
    )


def users_add(env: dict[str, str], name: str, role: str) -> None:
    done = run_cli(env, "users", "add", name, "--role", role, "--password-stdin", stdin=PASSWORD)
    assert done.returncode == 0, done.stderr


def start_console(
    pipeline: Pipeline, name: str, ttl: str, **more: str
) -> tuple[ManagedProcess, str]:
    port = free_port()
    env = {
        **pipeline.env,
        "CONSOLE_BIND": f"127.0.0.1:{port}",
        "CONSOLE_SECRET_KEY": secrets.token_urlsafe(32),
        "CONSOLE_SESSION_TTL": ttl,
        "INGRESS_URL": pipeline.ingress_url,
        **more,
    }
    process = pipeline_process(name, ["console"], env, pipeline.logs)
    process.start()
    url = f"http://127.0.0.1:{port}"
    process.wait_ready(lambda: http_ok(f"{url}/healthz"), 60, "console up")
    return process, url


@pytest.fixture(scope="module")
async def console(pipeline: Pipeline) -> AsyncIterator[Console]:
    env = {**pipeline.env, "PYTHONUNBUFFERED": "1"}
    await asyncio.gather(
        *(asyncio.to_thread(users_add, {**os.environ, **env}, r, r) for r in ROLES)
    )
    main, url = await asyncio.to_thread(start_console, pipeline, "console", "1h")
    short, short_url = await asyncio.to_thread(start_console, pipeline, "console-short", "2s")
    try:
        yield Console(url, short_url)
    finally:
        await asyncio.gather(asyncio.to_thread(main.stop, 20), asyncio.to_thread(short.stop, 20))


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield launched
        finally:
            await launched.close()


async def logged_in(browser: Browser, url: str, user: str) -> Page:
    return await logged_in_as(browser, url, user, PASSWORD)


async def logged_in_as(browser: Browser, url: str, user: str, password: str) -> Page:
    page = await (await browser.new_context()).new_page()
    dialogs: list[str] = []
    page.on("dialog", lambda d: dialogs.append(d.message))
    page.dialogs = dialogs  # type: ignore[attr-defined]
    await page.goto(url + "/login")
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", password)
    await page.click("button[type=submit]")
    await expect(page.locator("h1")).to_have_text("Overview")
    return page


async def login_form(client: httpx.AsyncClient) -> tuple[str, str]:
    """A login form's token and its console_login cookie (read by hand: it may be Secure)."""
    form = await client.get("/login")
    token = re.search(r'name="login_token" value="([^"]+)"', form.text)
    assert token is not None
    return token.group(1), form.headers["set-cookie"]
