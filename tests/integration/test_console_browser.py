"""The operator console in a real browser (Debian's chromium, driven by Playwright) against
the real pipeline: lookup timeline, masked and revealed patient, audited actions, DLQ replay,
roles, CSRF, escaping and session expiry."""

from __future__ import annotations

import asyncio
import os
import re
import uuid
from urllib.parse import quote

import httpx
import orjson
from playwright.async_api import Browser, expect

from devstack.process import free_port
from events.samples import SAMPLES, sample_visit
from tests.helpers import produce, wait_until

from .conftest import Pipeline
from .console_fixtures import (
    PASSWORD,
    Console,
    logged_in,
    logged_in_as,
    login_form,
    run_cli,
    start_console,
    users_add,
)
from .test_faults import cli


async def test_sample_timeline_masked_reveal_and_audit(
    pipeline: Pipeline, console: Console, browser: Browser
) -> None:
    assert (await pipeline.post(SAMPLES["visit.completed"])).status_code == 200
    assert (await pipeline.post(SAMPLES["visit.completed"])).status_code == 200  # a retry
    gfe_id = SAMPLES["visit.completed"]["data"]["gfe_id"]
    await pipeline.wait_rows("SELECT 1 FROM gfe_visits WHERE gfe_id = $1", gfe_id)

    async def mailed() -> list[object]:
        return [m for m in pipeline.mails() if gfe_id in str(m["Subject"])]

    await wait_until(mailed, 60, "the clinic's mail")

    page = await logged_in(browser, console.url, "phi")
    await page.goto(f"{console.url}/lookup?kind=gfe_id&q={gfe_id}")
    steps = page.locator("tr.step")

    async def all_steps() -> bool:
        await page.reload()
        return await page.locator("tr.step.done[data-stage=email]").count() == 1

    await wait_until(all_steps, 60, "the email step")
    text = await page.locator("table.timeline").inner_text()
    assert re.search(r"received, on t\w+\.visit-completed\[\d\]@\d+", text)
    assert "dropped duplicate" in text
    assert "verdict apply" in text
    assert re.search(
        r"spakinect_events row written from t\w+\.visits\[\d\]@\d+, applied to gfe_visits", text
    )
    assert re.search(
        r"sent to the clinic \(by today's settings: to c\*\*\*@example\.test, "
        r"Message-ID <visit\.completed",
        text,
    )
    assert await steps.count() == 5
    patient = page.locator("#patient")
    await expect(patient).to_contain_text("J*** S***,")
    await expect(patient).to_contain_text("j***@example.com")
    assert "Jane" not in await page.content()
    assert gfe_id not in await page.title()

    await page.fill("form.reveal input[name=reason]", "clinic called about this visit")
    await page.click("form.reveal button")
    await expect(page.locator("#patient")).to_contain_text("Jane Smith")
    assert "/lookup/reveal" in page.url
    assert "Jane" not in page.url

    admin = await logged_in(browser, console.url, "admin")
    await admin.goto(f"{console.url}/audit?action=phi.reveal")
    row = admin.locator("tr.audit").first
    await expect(row).to_contain_text("console:phi")
    await expect(row).to_contain_text(f"gfe:{gfe_id}")
    await expect(row).to_contain_text("clinic called about this visit")
    await expect(row).to_contain_text("127.0.0.1")


async def test_poisoned_row_is_replayed_from_the_page(
    pipeline: Pipeline, console: Console, browser: Browser
) -> None:
    run = uuid.uuid4().hex[:6]
    blocked, gfe_id = f"loc_blocked_{run}", f"gfe_console_{run}"
    await pipeline.fetch(
        f"ALTER TABLE gfe_visits ADD CONSTRAINT block_{run} CHECK (location_id <> '{blocked}')"
    )
    assert (await pipeline.post(sample_visit(gfe_id, location_id=blocked))).status_code == 200
    page = await logged_in(browser, console.url, "operator")

    async def listed() -> bool:
        await page.goto(f"{console.url}/dlq?stage=postgres")
        return await page.locator(f"tr.letter:has-text('{gfe_id}')").count() == 1

    await wait_until(listed, 60, "the dead letter on the page")
    await page.goto(f"{console.url}/")
    assert int(await page.locator("#dlq-count").inner_text()) >= 1
    await expect(page.locator("#last-received")).not_to_have_text("none yet")
    assert await page.locator("svg.chart rect").count() >= 1
    for part in ("kafka", "postgres", "ingress", "worker dedupe", "worker postgres"):
        await expect(page.locator(f"li.ok[data-part='{part}']")).to_have_text(f"{part}: ready")
    await page.goto(f"{console.url}/lookup?kind=gfe_id&q={gfe_id}")
    postgres = page.locator("tr.step.failed[data-stage=postgres]")
    await expect(postgres.filter(has_text="dead-lettered")).to_contain_text("23514")
    await expect(postgres.filter(has_text="no row")).to_have_text(
        re.compile(r"no row: in the DLQ since then")
    )
    assert "the postgres stage holds it" not in await page.locator("main").inner_text()

    await page.goto(f"{console.url}/dlq?stage=postgres")
    position = await page.locator(f"tr.letter:has-text('{gfe_id}') input").get_attribute("value")
    assert position is not None
    partition, offset = position.split(":")
    detail = await page.goto(f"{console.url}/dlq/{partition}/{offset}")
    assert detail is not None
    assert detail.status == 200
    await expect(page.locator("main")).to_contain_text(gfe_id)  # its event_id header
    await expect(page.locator("main")).to_contain_text("shown to the phi role only")
    for gone in (f"{partition}/{int(offset) + 10**9}", f"999/{offset}"):
        assert (await page.request.get(f"{console.url}/dlq/{gone}")).status == 404

    await pipeline.fetch(f"ALTER TABLE gfe_visits DROP CONSTRAINT block_{run}")  # the fix
    await page.goto(f"{console.url}/dlq?stage=postgres")
    await page.check(f"tr.letter:has-text('{gfe_id}') input[type=checkbox]")
    await page.click("#replay-selected")
    await expect(page.locator("h1")).to_have_text("Replay 1 dead letter(s)?")
    await page.click("#confirm-replay")
    await expect(page.locator("p.ok")).to_contain_text("Replayed 1 of 1")
    await pipeline.wait_rows("SELECT 1 FROM gfe_visits WHERE gfe_id = $1", gfe_id)
    entries = await pipeline.fetch(
        "SELECT actor FROM audit_log WHERE action = 'dlq.replay' AND details::text LIKE $1",
        f"%{gfe_id}%",
    )
    assert [e["actor"] for e in entries] == ["console:operator"]
    done = await pipeline.fetch(
        "SELECT details->>'sent' AS sent FROM audit_log WHERE action = 'dlq.replay.done'"
        " AND target = $1",
        f"dlq:{position}",
    )
    assert [d["sent"] for d in done] == ["1"]


async def test_viewer_sees_no_replay_and_a_forged_post_is_refused(
    console: Console, browser: Browser
) -> None:
    page = await logged_in(browser, console.url, "viewer")
    await page.goto(f"{console.url}/dlq")
    assert await page.locator("#replay-selected").count() == 0
    assert await page.locator("input[name=letter]").count() == 0
    csrf = await page.locator("header input[name=csrf]").get_attribute("value")
    response = await page.request.post(
        f"{console.url}/dlq/replay", form={"csrf": csrf or "", "letter": "0:0", "confirm": "yes"}
    )
    assert response.status == 403
    assert "this needs the operator role" in await response.text()  # its token was right
    reveal = await page.request.post(
        f"{console.url}/lookup/reveal", form={"csrf": csrf or "", "gfe_id": "x", "reason": "test"}
    )
    assert reveal.status == 403
    assert "this needs the phi role" in await reveal.text()
    audit_page = await page.request.get(f"{console.url}/audit")
    assert audit_page.status == 403
    assert "this needs the admin role" in await audit_page.text()


async def test_a_post_without_the_csrf_token_is_refused(console: Console, browser: Browser) -> None:
    page = await logged_in(browser, console.url, "admin")
    response = await page.request.post(
        f"{console.url}/dlq/replay", form={"letter": "0:0", "confirm": "yes"}
    )
    assert response.status == 403
    assert "CSRF" in await response.text()
    for forged in ("0" * 64, "é", "1700000000.é"):  # non-ASCII is refused, not an error
        wrong = await page.request.post(
            f"{console.url}/dlq/replay", form={"csrf": forged, "letter": "0:0", "confirm": "yes"}
        )
        assert wrong.status == 403
    csrf = await page.locator("header input[name=csrf]").get_attribute("value")
    missing = await page.request.post(f"{console.url}/dlq/replay", form={"csrf": csrf or ""})
    assert missing.status == 400
    assert "invalid: letter" in await missing.text()
    short = await page.request.post(
        f"{console.url}/lookup/reveal", form={"csrf": csrf or "", "gfe_id": "g", "reason": "x"}
    )
    assert short.status == 400
    assert "a reason is needed" in await short.text()
    odd = await page.request.post(
        f"{console.url}/dlq/replay", form={"csrf": csrf or "", "letter": "nonsense"}
    )
    assert odd.status == 400
    assert "partition:offset" in await odd.text()
    for listing in ("/dlq", "/audit"):  # one parser of `since` for both
        bad = await page.request.get(f"{console.url}{listing}?since=yesterday-ish")
        assert bad.status == 400
        assert "This filter is invalid: since is" in await bad.text()


async def test_a_hostile_patient_name_renders_as_text(
    pipeline: Pipeline, console: Console, browser: Browser
) -> None:
    gfe_id = f"gfe_xss_{uuid.uuid4().hex[:6]}"
    hostile = "<img src=x onerror=alert(1)>"
    body = sample_visit(gfe_id)
    body["data"]["patient_details"]["name"] = hostile
    assert (await pipeline.post(body)).status_code == 200
    await pipeline.wait_rows("SELECT 1 FROM gfe_visits WHERE gfe_id = $1", gfe_id)
    page = await logged_in(browser, console.url, "phi")
    await page.goto(f"{console.url}/lookup?kind=gfe_id&q={gfe_id}")
    await page.fill("form.reveal input[name=reason]", "checking the escaping")
    await page.click("form.reveal button")
    await expect(page.locator("#patient .name")).to_have_text(hostile)
    assert await page.locator("#patient img").count() == 0
    assert page.dialogs == []  # type: ignore[attr-defined]


async def test_an_expired_session_goes_back_to_login(console: Console, browser: Browser) -> None:
    page = await logged_in(browser, console.short_url, "viewer")
    cookies = await page.context.cookies()
    session = next(c for c in cookies if c["name"] == "console_session")
    assert session["httpOnly"]
    assert session["sameSite"] == "Strict"
    await asyncio.sleep(3.5)
    await page.goto(f"{console.short_url}/lookup")
    assert page.url.endswith("/login")
    # The server refuses the old value too, even from a client that keeps it.
    await page.context.add_cookies([{**session, "expires": -1}])  # type: ignore[typeddict-item]
    await page.goto(f"{console.short_url}/lookup")
    assert page.url.endswith("/login")


async def test_failed_logins_are_limited_and_audited(pipeline: Pipeline, console: Console) -> None:
    typed = ["Hunter2 my secret"] + ["nobody"] * 6  # a password typed in the user name box first
    async with httpx.AsyncClient(base_url=console.short_url, timeout=10) as client:
        statuses = []
        for name in typed:
            token, _ = await login_form(client)
            answer = await client.post(
                "/login", data={"username": name, "password": "wrong", "login_token": token}
            )
            statuses.append(answer.status_code)
    assert statuses == [401] * 6 + [429]  # five per user name and address
    counts = await pipeline.fetch(
        "SELECT action, target, actor, count(*) AS n FROM audit_log WHERE action LIKE 'login.%'"
        " AND (target IN ('user:nobody', 'user:(invalid)') OR target ILIKE '%hunter2%')"
        " GROUP BY action, target, actor ORDER BY action, target"
    )
    assert [(c["action"], c["target"], c["n"]) for c in counts] == [
        ("login.failed", "user:(invalid)", 1),
        ("login.failed", "user:nobody", 5),
        ("login.limited", "user:nobody", 1),
    ]
    assert {c["actor"] for c in counts} == {"console:(not logged in)"}


async def test_parallel_guesses_are_limited_per_forwarded_client(
    pipeline: Pipeline, console: Console
) -> None:
    settings = {"CONSOLE_FORWARDED_ALLOW_IPS": "127.0.0.1", "CONSOLE_SECURE_COOKIES": "true"}
    process, url = await asyncio.to_thread(start_console, pipeline, "console-lb", "1h", **settings)
    try:

        async def form() -> tuple[str, str]:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                token, cookie = await login_form(client)
            assert "Secure" in cookie
            return token, cookie.split(";")[0]

        async def guess(name: str, client_ip: str, token: str, cookie: str) -> int:
            async with httpx.AsyncClient(base_url=url, timeout=60) as client:
                answer = await client.post(
                    "/login",
                    data={"username": name, "password": "wrong", "login_token": token},
                    headers={"Cookie": cookie, "X-Forwarded-For": client_ip},
                )
            return answer.status_code

        forms = await asyncio.gather(*(form() for _ in range(12)))  # then all guesses at once
        statuses = await asyncio.gather(*(guess("guesser", "10.1.1.1", *f) for f in forms))
        assert sorted(statuses) == [401] * 5 + [429] * 7
        # Another client behind the same balancer has a limit of its own.
        token, cookie = await form()
        assert await guess("someone", "10.2.2.2", token, cookie) == 401
        assert await guess("someone", "10.2.2.2", "é", cookie) == 403  # not a 500
        rows = await pipeline.fetch(
            "SELECT action, client_addr::text AS addr FROM audit_log"
            " WHERE target = 'user:guesser' ORDER BY id"
        )
        assert {r["addr"].split("/")[0] for r in rows} == {"10.1.1.1"}
        assert sorted(r["action"] for r in rows) == ["login.failed"] * 5 + ["login.limited"] * 7
    finally:
        await asyncio.to_thread(process.stop, 20)
    async with httpx.AsyncClient(base_url=console.url, timeout=10) as client:
        token, _ = await login_form(client)  # CONSOLE_FORWARDED_ALLOW_IPS unset: ignored
        await client.post(
            "/login",
            data={"username": "forger", "password": "wrong", "login_token": token},
            headers={"X-Forwarded-For": "10.3.3.3"},
        )
    forged = await pipeline.fetch(
        "SELECT client_addr::text AS addr FROM audit_log WHERE target = 'user:forger'"
    )
    assert [r["addr"].split("/")[0] for r in forged] == ["127.0.0.1"]


async def test_an_erased_patient_shows_as_erased(
    pipeline: Pipeline, console: Console, browser: Browser
) -> None:
    gfe_id = f"gfe_erased_{uuid.uuid4().hex[:6]}"
    assert (await pipeline.post(sample_visit(gfe_id))).status_code == 200
    await pipeline.wait_rows("SELECT 1 FROM gfe_visits WHERE gfe_id = $1", gfe_id)
    await cli(pipeline, "phi", "forget", "--gfe-id", gfe_id, "--reason", "patient asked")
    page = await logged_in(browser, console.url, "phi")
    response = await page.goto(f"{console.url}/lookup?kind=gfe_id&q={gfe_id}")
    assert response is not None
    assert response.status == 200
    await expect(page.locator("#patient.erased")).to_contain_text("Patient: erased on")
    assert await page.locator("form.reveal").count() == 0
    await expect(page.locator("tr.step[data-stage=ingress]")).to_have_count(1)


async def test_refused_bodies_are_revalidated_and_replayed_after_a_confirmation(
    pipeline: Pipeline, console: Console, browser: Browser
) -> None:
    broken = sample_visit(f"gfe_refused_{uuid.uuid4().hex[:6]}")
    del broken["data"]["location_id"]  # still refused by today's models
    assert (await pipeline.post(broken)).status_code == 422
    page = await logged_in(browser, console.url, "operator")
    await page.goto(f"{console.url}/rejected")
    await expect(page.locator("main")).to_contain_text("still refused: schema")
    await page.click("main form button")
    await expect(page.locator("h1")).to_have_text("Replay refused bodies?")
    await page.click("#confirm-replay")
    await expect(page.locator("p.ok")).to_contain_text("Published 0 body(ies)")
    entries = await pipeline.fetch(
        "SELECT actor FROM audit_log WHERE action = 'rejected.replay' AND actor LIKE 'console:%'"
    )
    assert [e["actor"] for e in entries] == ["console:operator"]


async def test_refused_bodies_are_listed_and_a_body_is_shown_to_phi_only(
    pipeline: Pipeline, console: Console, browser: Browser
) -> None:
    gfe_id = f"gfe_listed_{uuid.uuid4().hex[:6]}"
    broken = sample_visit(gfe_id)
    del broken["data"]["location_id"]
    assert (await pipeline.post(broken)).status_code == 422
    page = await logged_in(browser, console.url, "operator")
    await page.goto(f"{console.url}/rejected/list?since=1h")
    newest = page.locator("tr.refused").first
    await expect(newest).to_contain_text("still refused:")
    reason = (await newest.locator("td.reason").inner_text()).strip()
    href = await newest.locator("a").get_attribute("href")
    assert href is not None
    await page.goto(f"{console.url}/rejected/list?reason=no-such-reason")
    assert await page.locator("tr.refused").count() == 0
    await page.goto(f"{console.url}/rejected/list?reason={quote(reason)}")
    assert await page.locator("tr.refused").count() >= 1
    await page.goto(console.url + href)
    await expect(page.locator("main")).to_contain_text("shown to the phi role only")
    assert gfe_id not in await page.content()
    phi = await logged_in(browser, console.url, "phi")
    await phi.goto(console.url + href)
    await expect(phi.locator("#body")).to_contain_text(gfe_id)
    target = "rejected:" + href.removeprefix("/rejected/").replace("/", ":")
    entries = await pipeline.fetch(
        "SELECT actor FROM audit_log WHERE action = 'rejected.view-body' AND target = $1", target
    )
    assert [e["actor"] for e in entries] == ["console:phi"]
    assert (await phi.request.get(f"{console.url}/rejected/999/0")).status == 404


async def test_a_refused_body_the_models_now_accept_is_replayed(
    pipeline: Pipeline, console: Console, browser: Browser
) -> None:
    gfe_id = f"gfe_accepted_{uuid.uuid4().hex[:6]}"
    body = orjson.dumps(sample_visit(gfe_id))  # refused by an older model, say
    await produce(pipeline.env["KAFKA_BOOTSTRAP_SERVERS"], pipeline.topics.rejected, [(b"", body)])
    page = await logged_in(browser, console.url, "operator")
    await page.goto(f"{console.url}/rejected")
    await page.click("main form button")
    await page.click("#confirm-replay")
    await expect(page.locator("p.ok")).to_contain_text(re.compile(r"Published [1-9]\d* body"))
    await pipeline.wait_rows("SELECT 1 FROM gfe_visits WHERE gfe_id = $1", gfe_id)


async def test_chosen_refused_bodies_are_replayed_after_a_confirmation(
    pipeline: Pipeline, console: Console, browser: Browser
) -> None:
    gfe_id = f"gfe_chosen_{uuid.uuid4().hex[:6]}"
    body = orjson.dumps(sample_visit(gfe_id))  # refused by an older model, say
    await produce(pipeline.env["KAFKA_BOOTSTRAP_SERVERS"], pipeline.topics.rejected, [(b"", body)])
    page = await logged_in(browser, console.url, "operator")
    await page.goto(f"{console.url}/rejected/list?since=10m")
    newest = page.locator("tr.refused").first
    await expect(newest).to_contain_text("accepted now")
    await newest.locator("input[type=checkbox]").check()
    await page.click("#replay-selected")
    await expect(page.locator("h1")).to_have_text("Replay 1 refused body(ies)?")
    await page.click("#confirm-replay")
    await expect(page.locator("p.ok")).to_contain_text("Published 1 body(ies), 0 unrouted; 0 still")
    await pipeline.wait_rows("SELECT 1 FROM gfe_visits WHERE gfe_id = $1", gfe_id)
    viewer = await logged_in(browser, console.url, "viewer")
    await viewer.goto(f"{console.url}/rejected/list")
    assert await viewer.locator("#replay-selected").count() == 0


async def test_users_cli_changes_passwords_and_removal_ends_sessions(
    pipeline: Pipeline, console: Console, browser: Browser
) -> None:
    env = {**os.environ, **pipeline.env}
    await asyncio.to_thread(users_add, env, "temp.user", "viewer")
    page = await logged_in(browser, console.url, "temp.user")
    changed = await asyncio.to_thread(
        run_cli, env, "users", "passwd", "temp.user", "--password-stdin", stdin="another long one"
    )
    assert changed.returncode == 0, changed.stderr
    async with httpx.AsyncClient(base_url=console.url, timeout=10) as client:
        form = await client.get("/login")
        token = re.search(r'name="login_token" value="([^"]+)"', form.text)
        assert token is not None
        old = await client.post(
            "/login",
            data={"username": "temp.user", "password": PASSWORD, "login_token": token.group(1)},
        )
        assert old.status_code == 401
    await page.goto(f"{console.url}/lookup")  # the session from before the change has ended
    assert page.url.endswith("/login")
    page = await logged_in_as(browser, console.url, "temp.user", "another long one")
    removed = await asyncio.to_thread(run_cli, env, "users", "remove", "temp.user")
    assert removed.returncode == 0, removed.stderr
    await page.goto(f"{console.url}/lookup")
    assert page.url.endswith("/login")
    again = await asyncio.to_thread(run_cli, env, "users", "remove", "temp.user")
    assert again.returncode == 1
    assert "no user temp.user" in again.stderr
    actions = await pipeline.fetch(
        "SELECT action FROM audit_log WHERE target = 'user:temp.user' AND action LIKE 'user.%'"
        " ORDER BY id"
    )
    assert [a["action"] for a in actions] == ["user.add", "user.passwd", "user.remove"]


async def test_logging_out_ends_copies_of_the_session_too(
    pipeline: Pipeline, console: Console, browser: Browser
) -> None:
    await asyncio.to_thread(users_add, {**os.environ, **pipeline.env}, "leaving.user", "viewer")
    page = await logged_in(browser, console.url, "leaving.user")
    copied = await page.context.cookies()
    await page.click("header form button")
    await page.wait_for_url("**/login")
    elsewhere = await (await browser.new_context()).new_page()
    await elsewhere.context.add_cookies(copied)  # type: ignore[arg-type]
    await elsewhere.goto(f"{console.url}/lookup")
    assert elsewhere.url.endswith("/login")


async def test_no_patient_data_in_the_console_log(
    pipeline: Pipeline, console: Console, browser: Browser
) -> None:
    gfe_id = f"gfe_logged_{uuid.uuid4().hex[:6]}"
    body = sample_visit(gfe_id)
    body["data"]["patient_details"]["name"] = "Zebedee Quartermaine"
    body["data"]["patient_details"]["email"] = "zebedee.q@example.org"
    assert (await pipeline.post(body)).status_code == 200
    await pipeline.wait_rows("SELECT 1 FROM gfe_visits WHERE gfe_id = $1", gfe_id)
    page = await logged_in(browser, console.url, "phi")
    await page.goto(f"{console.url}/lookup?kind=gfe_id&q={gfe_id}")
    await page.fill("form.reveal input[name=reason]", "checking the log")
    await page.click("form.reveal button")
    await expect(page.locator("#patient .name")).to_have_text("Zebedee Quartermaine")
    logs = "".join(p.read_text() for p in pipeline.logs.glob("console*.log"))
    assert "GET /lookup" in logs  # the access log is on
    assert "POST /lookup/reveal" in logs
    for secret in ("Zebedee", "Quartermaine", "zebedee.q", gfe_id):
        assert secret not in logs


async def test_behind_a_trusted_proxy_its_header_names_the_user(
    pipeline: Pipeline, console: Console
) -> None:
    proxy = {"CONSOLE_TRUSTED_PROXY_HEADER": "X-Forwarded-User"}
    process, url = await asyncio.to_thread(start_console, pipeline, "console-proxy", "1h", **proxy)
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            nobody = await client.get("/lookup")
            assert nobody.status_code == 303
            assert nobody.headers["location"] == "/login"
            unknown = await client.get("/lookup", headers={"X-Forwarded-User": "mallory"})
            assert unknown.status_code == 303
            page = await client.get("/audit", headers={"X-Forwarded-User": "Admin"})
            assert page.status_code == 200
            token = re.search(r'name="csrf" value="([^"]+)"', page.text)
            assert token is not None
            viewer_page = await client.get("/dlq", headers={"X-Forwarded-User": "viewer"})
            viewer_token = re.search(r'name="csrf" value="([^"]+)"', viewer_page.text)
            assert viewer_token is not None
            as_viewer = await client.post(
                "/dlq/replay",
                headers={"X-Forwarded-User": "viewer"},
                data={"csrf": viewer_token.group(1), "letter": "0:0"},
            )
            assert as_viewer.status_code == 403
            assert "this needs the operator role" in as_viewer.text
            borrowed = await client.post(  # the admin's token is not the viewer's
                "/dlq/replay",
                headers={"X-Forwarded-User": "viewer"},
                data={"csrf": token.group(1), "letter": "0:0"},
            )
            assert borrowed.status_code == 403
            assert "CSRF" in borrowed.text
            not_found = await client.post(
                "/dlq/replay",
                headers={"X-Forwarded-User": "admin"},
                data={"csrf": token.group(1), "letter": "99:99"},
            )
            assert not_found.status_code == 404  # past CSRF and role: no such dead letter
    finally:
        await asyncio.to_thread(process.stop, 20)


async def test_without_kafka_the_overview_and_lookup_say_so(
    pipeline: Pipeline, console: Console
) -> None:
    nowhere = {"KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    process, url = await asyncio.to_thread(
        start_console, pipeline, "console-no-kafka", "1h", **nowhere
    )
    try:
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            token, _ = await login_form(client)
            login = await client.post(
                "/login", data={"username": "viewer", "password": PASSWORD, "login_token": token}
            )
            assert login.status_code == 303
            overview = await client.get("/")
            assert overview.status_code == 200
            assert "Kafka unreachable" in overview.text
            assert 'data-part="kafka" class="error">kafka: NOT ready' in overview.text
            assert 'data-part="postgres" class="ok"' in overview.text
            lookup = await client.get("/lookup", params={"kind": "gfe_id", "q": "gfe_x"})
            assert lookup.status_code == 503
            assert "Kafka unreachable" in lookup.text
            assert "Traceback" not in lookup.text
            assert lookup.headers["content-security-policy"].startswith("default-src 'self'")
    finally:
        await asyncio.to_thread(process.stop, 20)
    logs = (pipeline.logs / "console-no-kafka.log").read_text()
    assert "GET /lookup 503" in logs  # the access log saw it


async def test_without_postgres_pages_say_so(
    pipeline: Pipeline, console: Console, browser: Browser
) -> None:
    page = await logged_in(browser, console.url, "viewer")
    await pipeline.pg_proxy.down()
    try:
        response = await page.goto(f"{console.url}/lookup")
        assert response is not None
        assert response.status == 503
        await expect(page.locator("main")).to_contain_text("Postgres unreachable")
        assert response.headers["x-frame-options"] == "DENY"
    finally:
        await pipeline.pg_proxy.up()

    async def back() -> bool:
        answer = await page.goto(f"{console.url}/lookup")
        return answer is not None and answer.status == 200

    await wait_until(back, 30, "the console after Postgres is back")
