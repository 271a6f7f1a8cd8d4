"""The console's pages as an operator reads them (Debian's chromium, Playwright): error pages
inside the frame, an unknown id, the charts, replayed dead letters, the refused list, the
audit page, the timeline's order and layout, hiding revealed patient data."""

from __future__ import annotations

import re
import uuid

from playwright.async_api import Browser, Page, expect

from events.samples import sample_visit
from tests.helpers import wait_until

from .conftest import Pipeline
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


async def test_a_replayed_dead_letter_shows_who_when_and_the_outcome(
    pipeline: Pipeline, console: Console, browser: Browser
) -> None:
    run = uuid.uuid4().hex[:6]
    blocked, gfe_id = f"loc_blocked_{run}", f"gfe_replayed_{run}"
    await pipeline.fetch(
        f"ALTER TABLE gfe_visits ADD CONSTRAINT block_{run} CHECK (location_id <> '{blocked}')"
    )
    assert (await pipeline.post(sample_visit(gfe_id, location_id=blocked))).status_code == 200
    page = await logged_in(browser, console.url, "operator")
    letter = page.locator(f"tr.letter:has-text('{gfe_id}')")

    async def listed() -> bool:
        await page.goto(f"{console.url}/dlq")
        return await letter.count() == 1

    await wait_until(listed, 60, "the dead letter on the page")
    await expect(letter).to_have_class(re.compile(r"\bopen\b"))
    await page.goto(f"{console.url}/")
    await expect(page.locator("#dlq-count")).to_have_text("1")

    await pipeline.fetch(f"ALTER TABLE gfe_visits DROP CONSTRAINT block_{run}")  # the fix
    await page.goto(f"{console.url}/dlq")
    await letter.locator("input[type=checkbox]").check()
    await page.click("#replay-selected")
    await page.click("#confirm-replay")
    await expect(page.locator("p.ok")).to_contain_text("Replayed 1 of 1")
    await pipeline.wait_rows("SELECT 1 FROM gfe_visits WHERE gfe_id = $1", gfe_id)
    kept = await pipeline.fetch(
        "SELECT actor, outcome FROM dlq_replays WHERE event_id LIKE $1", f"%{gfe_id}%"
    )
    assert [(k["actor"], k["outcome"]) for k in kept] == [("console:operator", "sent")]

    await page.goto(f"{console.url}/dlq")
    await expect(letter).to_have_class(re.compile(r"\bresolved\b"))
    await expect(letter.locator("td.state")).to_have_text(
        re.compile(
            r"resolved: replayed \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC by console:operator: "
            r"sent back to its stage; the row is written"
        )
    )
    await page.goto(f"{console.url}/dlq?state=open")
    assert await letter.count() == 0
    await page.goto(f"{console.url}/")
    await expect(page.locator("#dlq-count")).to_have_text("0")
    await expect(page.locator("#dlq-replayed")).to_have_text("1")

    await page.goto(f"{console.url}/lookup?kind=gfe_id&q={gfe_id}")
    states = await page.locator("tr.step").evaluate_all(
        "rows => rows.map(r => r.dataset.stage + ':' + r.className.replace('step ', ''))"
    )
    assert "postgres:failed" not in states
    assert "postgres:replayed" in states, states
    assert states.index("postgres:replayed") < states.index("postgres:done")
    assert states[-1] != "postgres:replayed"  # the visit does not end on the old failure


async def test_the_overview_charts_have_a_time_axis_and_values(
    pipeline: Pipeline, console: Console, browser: Browser
) -> None:
    gfe_id = f"gfe_charted_{uuid.uuid4().hex[:6]}"
    assert (await pipeline.post(sample_visit(gfe_id))).status_code == 200
    page = await logged_in(browser, console.url, "viewer")
    day, week = page.locator("svg.chart.day"), page.locator("svg.chart.week")
    await expect(day.locator("text.x-label")).to_have_count(8)  # every 3 hours
    await expect(day.locator("text.x-label").first).to_have_text(re.compile(r"^\d\d:00$"))
    await expect(week.locator("text.x-label")).to_have_count(7)  # one a day
    await expect(week.locator("text.x-label").last).to_have_text(re.compile(r"^\w{3} \d\d \w{3}$"))
    for svg in (day, week):
        assert int(await svg.locator("text.value").last.text_content() or "0") >= 1  # not hover
        await expect(svg.locator("text.y-label").first).to_have_text("0")
    column = await week.locator("rect").last.bounding_box()
    assert column is not None
    assert column["width"] >= 40  # a day's column, not a one-pixel sliver
    assert column["height"] >= 20
