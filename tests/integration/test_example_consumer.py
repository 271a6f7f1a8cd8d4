"""The example consumer in examples/ works against the real clean topic."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from events.registry import VISIT_COMPLETED
from examples.consume_visits import RecentIds, consume
from tests.helpers import committed_offsets, produce, read_topic

from .conftest import Pipeline
from .test_pipeline import visit

pytestmark = pytest.mark.integration


async def test_example_consumer_reads_each_visit_once_with_its_disposition(
    pipeline: Pipeline,
) -> None:
    gfe_id = f"gfe_ex_{uuid.uuid4().hex[:6]}"
    bootstrap, topic = pipeline.services.kafka_bootstrap, pipeline.topics.clean(VISIT_COMPLETED)
    assert (await pipeline.post(visit(gfe_id, 1_714_675_300_000))).status_code == 200
    await pipeline.wait_rows("SELECT 1 FROM spakinect_events WHERE entity_id = $1", gfe_id)
    (applied,) = [m for m in await read_topic(bootstrap, topic) if m.key == gfe_id.encode()]
    # The pipeline repeating a message (as after a worker crash): same key, same partition.
    await produce(bootstrap, topic, [(applied.key, applied.value)])
    older = visit(gfe_id, 1_714_675_200_000)  # published after the repeat: stale
    assert (await pipeline.post(older)).status_code == 200
    await pipeline.wait_rows("SELECT 1 FROM spakinect_events WHERE entity_id = $1", gfe_id, count=2)
    messages = await read_topic(bootstrap, topic)
    seen: list[dict[str, Any]] = []

    async def handle(envelope: dict[str, Any]) -> None:
        if envelope["payload"]["data"]["gfe_id"] == gfe_id:
            seen.append(envelope)

    group = f"example-{uuid.uuid4().hex[:6]}"
    handled = await consume(bootstrap, topic, group, handle, stop_after=len(messages) - 1)
    assert handled == len(messages) - 1  # the repeat was read and not handled
    assert [e["disposition"] for e in seen] == ["apply", "stale"]
    # It committed after its work, up to the last message it handled.
    last = max((m for m in messages if m.key == gfe_id.encode()), key=lambda m: m.offset)
    committed = await committed_offsets(bootstrap, group, topic)
    assert committed[last.partition] == last.offset + 1


def test_recent_ids_drop_repeats_and_stay_bounded() -> None:
    recent = RecentIds(size=2)
    assert [recent.seen(x) for x in ("a", "a", "b", "c", "a")] == [False, True, False, False, False]
