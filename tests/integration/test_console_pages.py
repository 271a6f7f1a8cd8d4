"""The console's pages as an operator reads them (Debian's chromium, Playwright): error pages
inside the frame, an unknown id, the charts, replayed dead letters, the refused list, the
audit page, the timeline's order and layout, hiding revealed patient data."""

from __future__ import annotations

import uuid

from playwright.async_api import Browser, Page, expect

from .console_fixtures import Console, logged_in


async def _in_frame(page: Page, who: str) -> None:
    """The normal page frame: navigation, the user's name and role, Log out."""
    await expect(page.locator("header nav a[href='/lookup']")).to_be_visible()
    await expect(page.locator("header .who")).to_have_text(who)
    await expect(page.locator("header form button")).to_have_text("Log out")


async def test_error_pages_say_what_happened_inside_the_frame(
    console: Console, browser: Browser
) -> None:
    page = await logged_in(browser, console.url, "viewer")
    forbidden = await page.goto(f"{console.url}/audit")
    assert forbidden is not None
    assert forbidden.status == 403
    await expect(page.locator("h1")).to_have_text("Not allowed")
    await expect(page.locator("p.error")).to_have_text(
        "Not allowed for your role (viewer): this needs the admin role."
    )
    await _in_frame(page, "viewer (viewer)")
    for path, says in (
        ("/dlq/0/999999999", "no such dead letter"),
        ("/no-such-page", "There is no page at /no-such-page."),
    ):
        missing = await page.goto(console.url + path)
        assert missing is not None
        assert missing.status == 404
        await expect(page.locator("h1")).to_have_text("Not found")
        await expect(page.locator("p.error")).to_have_text(says)
        await _in_frame(page, "viewer (viewer)")
    bad = await page.goto(f"{console.url}/dlq?since=yesterday-ish")
    assert bad is not None
    assert bad.status == 400
    await expect(page.locator("h1")).to_have_text("Invalid filter")
    await expect(page.locator("p.error")).to_contain_text(
        "This filter is invalid: since is 'yesterday-ish'; it takes an ISO time"
    )
    await _in_frame(page, "viewer (viewer)")
    await page.click("#unfiltered")
    await expect(page.locator("h1")).to_have_text("Dead letters")


async def test_an_unknown_id_says_nothing_was_received_and_what_to_check(
    console: Console, browser: Browser
) -> None:
    gfe_id = f"gfe_never_{uuid.uuid4().hex[:6]}"
    page = await logged_in(browser, console.url, "viewer")
    await page.goto(f"{console.url}/lookup?kind=gfe_id&q={gfe_id}")
    nothing = page.locator("#nothing")
    await expect(nothing).to_contain_text(
        f"Nothing with gfe_id {gfe_id} was received in what was read: no webhook on Kafka"
        " and no row in Postgres."
    )
    await expect(nothing).to_contain_text("visit-completed partition")
    await expect(page.locator("ul.checks")).to_contain_text("Refused bodies")
    assert await page.locator("main h2").count() == 0  # no heading as if it were a record
    assert await page.locator("table.timeline").count() == 0
    await page.goto(f"{console.url}/lookup?kind=event_id&q=nonsense")
    await expect(page.locator("#nothing")).to_contain_text("nonsense is not an event_id")
