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
    await expect(week.locator("text.x-label").last).to_have_text(re.compile(r"^\w{3} \d\d$"))
    for svg in (day, week):
        assert int(await svg.locator("text.value").last.text_content() or "0") >= 1  # not hover
        await expect(svg.locator("text.y-label").first).to_have_text("0")
    column = await week.locator("rect").last.bounding_box()
    assert column is not None
    assert column["width"] >= 40  # a day's column, not a one-pixel sliver
    assert column["height"] >= 20


async def test_refused_list_shows_event_entity_and_every_invalid_field(
    pipeline: Pipeline, console: Console, browser: Browser
) -> None:
    gfe_id = f"gfe_twice_wrong_{uuid.uuid4().hex[:6]}"
    broken = sample_visit(gfe_id)
    del broken["data"]["location_id"]
    del broken["success"]  # the ingress names only this one: its envelope check stops there
    assert (await pipeline.post(broken)).status_code == 422
    page = await logged_in(browser, console.url, "viewer")
    await page.goto(f"{console.url}/rejected/list?since=1h")
    row = page.locator(f"tr.refused:has(td.entity:text-is('{gfe_id}'))")
    await expect(row.locator("td.event")).to_have_text("visit.completed")
    await expect(row.locator("td.fields")).to_have_text("success, data.location_id")
    assert "Jane" not in await page.content()  # the patient's fields are not shown
    await page.goto(f"{console.url}/rejected")
    await expect(page.locator("main")).to_contain_text("still refused: schema")
    assert "still_refused:" not in await page.locator("main").inner_text()


async def test_the_audit_page_says_utc_shows_outcomes_and_no_dash_actor(
    pipeline: Pipeline, console: Console, browser: Browser
) -> None:
    page = await browser.new_page()
    await page.goto(f"{console.url}/login")
    await page.fill("input[name=username]", "nosuchuser")
    await page.fill("input[name=password]", "wrong password")
    await page.click("button[type=submit]")
    await expect(page.locator("p.error")).to_have_text("Wrong user name or password.")
    broken = sample_visit(f"gfe_audited_{uuid.uuid4().hex[:6]}")
    del broken["data"]["location_id"]
    assert (await pipeline.post(broken)).status_code == 422
    operator = await logged_in(browser, console.url, "operator")
    await operator.goto(f"{console.url}/rejected")
    await operator.click("main form button")
    await operator.click("#confirm-replay")
    await expect(operator.locator("p.ok")).to_contain_text("still refused")
    admin = await logged_in(browser, console.url, "admin")
    await admin.goto(f"{console.url}/audit?target=user:nosuchuser")
    row = admin.locator("tr.audit").first
    await expect(row.locator("td.actor")).to_have_text("not logged in (the login form)")
    await expect(row.locator("td.when")).to_have_text(
        re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$")
    )
    await admin.goto(f"{console.url}/audit?action=rejected.replay.done")
    await expect(admin.locator("tr.audit td.outcome").first).to_have_text(
        re.compile(r"^published 0, unrouted 0, still refused [1-9]\d*$")
    )
    assert "console:-" not in await admin.content()


async def test_the_timeline_reads_in_order_on_one_line_per_time(
    pipeline: Pipeline, console: Console, browser: Browser
) -> None:
    gfe_id = f"gfe_twice_{uuid.uuid4().hex[:6]}"
    body = sample_visit(gfe_id)
    for _ in range(2):  # the vendor's retry
        assert (await pipeline.post(body)).status_code == 200
    await pipeline.wait_rows("SELECT 1 FROM gfe_visits WHERE gfe_id = $1", gfe_id)
    page = await logged_in(browser, console.url, "viewer")
    await page.set_viewport_size({"width": 1280, "height": 900})
    steps = page.locator("tr.step")

    async def judged() -> bool:
        await page.goto(f"{console.url}/lookup?kind=gfe_id&q={gfe_id}")
        return await steps.filter(has_text="dropped duplicate").count() == 1

    await wait_until(judged, 60, "the duplicate's verdict")
    texts = await steps.all_inner_texts()
    assert "received, on" in texts[0]
    assert "verdict apply" in texts[1]  # the verdict the duplicate is judged by ...
    assert "dropped duplicate" in texts[2]  # ... comes before it
    lines = await page.locator("tr.step td.when").evaluate_all(
        "cells => cells.map(c => { const r = document.createRange();"
        " r.selectNodeContents(c); return new Set([...r.getClientRects()].map(x => x.top)).size; })"
    )
    assert lines
    assert set(lines) == {1}  # each time on one line


async def test_revealed_patient_data_can_be_hidden_and_the_mask_hides_lengths(
    pipeline: Pipeline, console: Console, browser: Browser
) -> None:
    gfe_id = f"gfe_hidden_{uuid.uuid4().hex[:6]}"
    body = sample_visit(gfe_id)
    body["data"]["patient_details"]["name"] = "Bartholomew Quintanilla-Smith"
    body["data"]["patient_details"]["email"] = "bartholomew.q@example.org"
    assert (await pipeline.post(body)).status_code == 200
    await pipeline.wait_rows("SELECT 1 FROM gfe_visits WHERE gfe_id = $1", gfe_id)
    page = await logged_in(browser, console.url, "phi")
    await page.goto(f"{console.url}/lookup?kind=gfe_id&q={gfe_id}")
    await expect(page.locator("#patient .name")).to_have_text("B*** Q***")
    await expect(page.locator("#patient .email")).to_have_text("b***@example.org")
    await page.fill("form.reveal input[name=reason]", "clinic asked to confirm")
    await page.click("form.reveal button")
    await expect(page.locator("#patient .name")).to_have_text("Bartholomew Quintanilla-Smith")
    await page.click("#hide")
    await expect(page.locator("#patient .name")).to_have_text("B*** Q***")
    assert "Bartholomew" not in await page.content()
    assert "/lookup/reveal" not in page.url


async def test_pages_fit_a_narrow_screen(
    pipeline: Pipeline, console: Console, browser: Browser
) -> None:
    gfe_id = f"gfe_narrow_{uuid.uuid4().hex[:6]}"
    assert (await pipeline.post(sample_visit(gfe_id))).status_code == 200
    await pipeline.wait_rows("SELECT 1 FROM gfe_visits WHERE gfe_id = $1", gfe_id)
    page = await logged_in(browser, console.url, "admin")
    await page.set_viewport_size({"width": 390, "height": 800})
    for path in ("/", f"/lookup?kind=gfe_id&q={gfe_id}", "/dlq", "/rejected/list", "/audit"):
        await page.goto(console.url + path)
        wide = await page.evaluate("document.documentElement.scrollWidth")
        assert wide <= 390, f"{path} is {wide} px wide"
