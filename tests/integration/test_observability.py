"""What the alerts and the dashboard read is what the running pipeline exports.

Scrapes the real /metrics of the ingress and of a worker of each stage, and
watches the email stage's time behind grow while its SMTP server is cut.
"""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from events.samples import sample_visit as visit
from tests.helpers import wait_until
from tests.observability import PROMETHEUS_MADE, all_exprs, exported_names, metric_names

from .conftest import STAGES, Pipeline

pytestmark = pytest.mark.integration


async def scrape(pipeline: Pipeline) -> dict[str, str]:
    async with httpx.AsyncClient(timeout=10) as client:
        ingress = await client.get(f"{pipeline.ingress_url}/metrics")
    ingress.raise_for_status()
    return {"ingress": ingress.text, **{s: await pipeline.metrics(s) for s in STAGES}}


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [
        (sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    ]


def behind(text: str) -> float:
    """The stage's time behind: its worst partition."""
    values = [value for _, value in samples(text, "streams_time_behind_seconds")]
    assert values, "no streams_time_behind_seconds samples"
    return max(values)


async def test_every_metric_an_alert_or_the_dashboard_names_is_exported(pipeline: Pipeline):
    gfe_id = f"gfe_obs_{uuid.uuid4().hex[:6]}"
    assert (await pipeline.post(visit(gfe_id))).status_code == 200
    await pipeline.wait_rows("SELECT 1 FROM gfe_visits WHERE gfe_id = $1", gfe_id)
    texts = await scrape(pipeline)
    exported = set().union(*(exported_names(text) for text in texts.values()))
    named = set().union(*(metric_names(expr) for expr in all_exprs()))
    assert named - exported - PROMETHEUS_MADE == set(), "named by alerts/dashboard, not exported"
    for stage in STAGES:
        partitions = samples(texts[stage], "streams_time_behind_seconds")
        assert {labels["stage"] for labels, _ in partitions} == {stage}
        assert all(value >= 0 for _, value in partitions)
    gauges = {labels["name"]: value for labels, value in samples(texts["dedupe"], "streams_state")}
    assert gauges["dedupe_window_seconds"] == 7 * 86400
    assert gauges["expiry_overdue_seconds"] == 0
    for text in texts.values():
        assert gfe_id not in text
        assert "Jane" not in text


async def test_a_stage_stuck_on_its_sink_shows_growing_time_behind_and_others_do_not(
    pipeline: Pipeline,
):
    async def caught_up() -> bool:
        texts = await scrape(pipeline)
        return all(behind(texts[stage]) == 0 for stage in STAGES)

    await wait_until(caught_up, 30, "every stage caught up")
    gfe_id = f"gfe_obs_{uuid.uuid4().hex[:6]}"
    await pipeline.smtp_proxy.down()
    try:
        assert (await pipeline.post(visit(gfe_id))).status_code == 200
        await pipeline.wait_rows("SELECT 1 FROM gfe_visits WHERE gfe_id = $1", gfe_id)

        async def email_behind() -> float:
            age = behind(await pipeline.metrics("email"))
            return age if age >= 4 else 0.0

        first = await wait_until(email_behind, 30, "the email stage 4 s behind")
        await asyncio.sleep(2)
        assert behind(await pipeline.metrics("email")) >= first + 1.5  # still stuck: it grows
        texts = await scrape(pipeline)
        assert behind(texts["postgres"]) < 2  # the row is written; another sink is not held back
        assert behind(texts["dedupe"]) < 2
    finally:
        await pipeline.smtp_proxy.up()

    async def email_caught_up() -> bool:
        return behind(await pipeline.metrics("email")) == 0

    await wait_until(email_caught_up, 60, "the email stage caught up after SMTP came back")
