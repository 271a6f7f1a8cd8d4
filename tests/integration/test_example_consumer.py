"""The example consumer in examples/ works against the real clean topic."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from examples.consume_visits import RecentIds, consume
from tests.helpers import read_topic

from .conftest import Pipeline
from .test_pipeline import visit

pytestmark = pytest.mark.integration


async def test_example_consumer_reads_each_visit_once_with_its_disposition(
    pipeline: Pipeline,
) -> None:
    gfe_id = f"gfe_ex_{uuid.uuid4().hex[:6]}"
    for timestamp in (1_714_675_300_000, 1_714_675_200_000):  # newer first: 2nd is stale
        assert (await pipeline.post(visit(gfe_id, timestamp))).status_code == 200
    await pipeline.wait_rows("SELECT 1 FROM spakinect_events WHERE entity_id = $1", gfe_id, count=2)
    total = len(await read_topic(pipeline.services.kafka_bootstrap, pipeline.topics.visits))
    seen: list[dict[str, Any]] = []

    async def handle(envelope: dict[str, Any]) -> None:
        if envelope["payload"]["data"]["gfe_id"] == gfe_id:
            seen.append(envelope)

    handled = await consume(
        pipeline.services.kafka_bootstrap,
        pipeline.topics.visits,
        f"example-{uuid.uuid4().hex[:6]}",
        handle,
        stop_after=total,
    )
    assert handled == total
    assert [e["disposition"] for e in seen] == ["apply", "stale"]


def test_recent_ids_drop_repeats_and_stay_bounded() -> None:
    recent = RecentIds(size=2)
    assert [recent.seen(x) for x in ("a", "a", "b", "c", "a")] == [False, True, False, False, False]
