"""The login throttle in a real browser: a guesser backs off, the admin is never locked out."""

from __future__ import annotations

import asyncio
import os
import time

from playwright.async_api import Browser, Page, expect

from .conftest import Pipeline
from .console_fixtures import PASSWORD, start_console, users_add


async def _from(browser: Browser, address: str) -> Page:
    """A browser whose requests come from ``address`` (X-Forwarded-For, believed from
    127.0.0.1 by this console)."""
    context = await browser.new_context(extra_http_headers={"X-Forwarded-For": address})
    return await context.new_page()


async def _try(page: Page, url: str, user: str, password: str) -> int:
    await page.goto(url + "/login")
    await page.fill("input[name=username]", user)
    await page.fill("input[name=password]", password)
    async with page.expect_response(lambda r: r.request.method == "POST") as posted:
        await page.click("button[type=submit]")
    return (await posted.value).status


async def test_a_guesser_backs_off_and_cannot_lock_the_admin_out(
    pipeline: Pipeline, browser: Browser
) -> None:
    await asyncio.to_thread(users_add, {**os.environ, **pipeline.env}, "boss", "admin")
    settings = {"CONSOLE_FORWARDED_ALLOW_IPS": "127.0.0.1", "CONSOLE_LOGIN_BACKOFF": "3s"}
    process, url = await asyncio.to_thread(
        start_console, pipeline, "console-throttle", "1h", **settings
    )
    try:
        guesser = await _from(browser, "10.7.7.7")
        for _ in range(5):
            assert await _try(guesser, url, "boss", "not the password") == 401
            await expect(guesser.locator("p.error")).to_have_text("Wrong user name or password.")
        # The guesser's address is refused even the right password, for a while, and told so.
        assert await _try(guesser, url, "boss", PASSWORD) == 429
        await expect(guesser.locator("p.error")).to_contain_text(
            "Too many failed attempts at this user name from your address: try again in"
        )
        # The admin, from an address that has not been guessing, gets in: slowed, not refused.
        admin = await _from(browser, "10.8.8.8")
        started = time.monotonic()
        assert await _try(admin, url, "boss", PASSWORD) == 303
        await expect(admin.locator("h1")).to_have_text("Overview")
        assert time.monotonic() - started >= 0.5
        await expect(admin.locator("header .who")).to_have_text("boss (admin)")
        # The back-off ends: a few seconds, not a quarter of an hour.
        await asyncio.sleep(3.5)
        assert await _try(guesser, url, "boss", PASSWORD) == 303
        await expect(guesser.locator("h1")).to_have_text("Overview")
    finally:
        await asyncio.to_thread(process.stop, 20)
    rows = await pipeline.fetch(
        "SELECT action, host(client_addr) AS addr FROM audit_log"
        " WHERE target = 'user:boss' AND action LIKE 'login.%' ORDER BY id"
    )
    assert [(r["action"], r["addr"]) for r in rows] == [("login.failed", "10.7.7.7")] * 5 + [
        ("login.limited", "10.7.7.7")
    ]
