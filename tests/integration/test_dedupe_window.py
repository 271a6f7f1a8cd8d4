"""A short DEDUPE_WINDOW: the stage forgets old events by itself, and the sinks stay
idempotent beyond the window (no second row, no second email); entries restored from the
changelog expire too."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest

from events.registry import VISIT_COMPLETED
from tests.helpers import read_topic, wait_until

from .conftest import Pipeline
from .test_pipeline import mails_for, visit

pytestmark = pytest.mark.integration
PIPELINE_ENV = {"DEDUPE_WINDOW": "3s", "KAFKA_PARTITIONS": "1"}


async def test_duplicates_beyond_the_window_are_caught_by_the_sinks(pipeline: Pipeline) -> None:
    gfe_id = f"gfe_win_{uuid.uuid4().hex[:6]}"
    body = visit(gfe_id)
    assert (await pipeline.post(body)).status_code == 200
    assert (await pipeline.post(body)).status_code == 200  # inside the window: dropped
    await wait_until(lambda: asyncio.sleep(0, mails_for(pipeline, gfe_id)), 30, "the email")

    await asyncio.sleep(4)  # the window passes; the next event sweeps the old entry away
    assert (await pipeline.post(visit(f"{gfe_id}_sweeper"))).status_code == 200
    await pipeline.wait_rows("SELECT 1 FROM gfe_visits WHERE gfe_id = $1", f"{gfe_id}_sweeper")
    (before,) = await pipeline.fetch(WRITTEN_AT, gfe_id)
    assert (await pipeline.post(body)).status_code == 200  # beyond the window
    await pipeline.consumed("dedupe", pipeline.topics.raw(VISIT_COMPLETED))
    for stage in ("postgres", "email"):
        await pipeline.consumed(stage, pipeline.topics.clean(VISIT_COMPLETED))

    clean = [
        m
        for m in await read_topic(
            pipeline.services.kafka_bootstrap, pipeline.topics.clean(VISIT_COMPLETED)
        )
        if m.key == gfe_id.encode()
    ]
    assert len(clean) == 2  # the stage forgot it: state is bounded by the window
    # The writer took the repeat as a no-op: no row rewritten, nothing dead-lettered.
    assert await pipeline.fetch(WRITTEN_AT, gfe_id) == [before]
    assert [m for m in await dead_letters(pipeline) if m.key == gfe_id.encode()] == []
    assert len(mails_for(pipeline, gfe_id)) == 1  # send-once state outlives the window


async def test_entries_restored_from_the_changelog_expire_too(pipeline: Pipeline) -> None:
    """faust-streaming's windowed tables never expire restored keys (its issue #385): the
    stage tombstones them itself once the window has passed."""
    gfe_id = f"gfe_restored_{uuid.uuid4().hex[:6]}"
    assert (await pipeline.post(visit(gfe_id))).status_code == 200
    await pipeline.consumed("dedupe", pipeline.topics.raw(VISIT_COMPLETED))
    changelog = f"{pipeline.group('dedupe')}-entities-changelog"
    key = orjson.dumps(f"visit.completed:{gfe_id}")

    async def entry_writes() -> list[bool]:
        """For each changelog write of the entry: does it hold a value (not a tombstone)?"""
        messages = await read_topic(pipeline.services.kafka_bootstrap, changelog)
        return [m.value is not None for m in messages if m.key == key]

    assert await entry_writes() == [True]
    await asyncio.sleep(4)  # the 3 s window passes; nothing has swept the entry yet
    # Local state deleted: the entry can only come back from the changelog.
    await pipeline.restart("dedupe", wipe_state=True)
    assert (await pipeline.post(visit(f"{gfe_id}_sweeper"))).status_code == 200  # same partition
    await pipeline.consumed("dedupe", pipeline.topics.raw(VISIT_COMPLETED))
    assert await entry_writes() == [True, False]


WRITTEN_AT = """
SELECT v.updated_at, e.inserted_at FROM gfe_visits v JOIN spakinect_events e USING (event_id)
WHERE v.gfe_id = $1
"""


async def dead_letters(pipeline: Pipeline) -> list[Any]:
    return await read_topic(pipeline.services.kafka_bootstrap, pipeline.topics.dlq)
