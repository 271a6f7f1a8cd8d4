"""A short DEDUPE_WINDOW: the stage forgets old events by itself, and the sinks stay
idempotent beyond the window (no second row, no second email)."""

from __future__ import annotations

import asyncio
import uuid

import pytest

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
    assert (await pipeline.post(body)).status_code == 200  # beyond the window
    sentinel = f"{gfe_id}_sentinel"
    assert (await pipeline.post(visit(sentinel))).status_code == 200
    await pipeline.wait_rows("SELECT 1 FROM gfe_visits WHERE gfe_id = $1", sentinel)
    await wait_until(lambda: asyncio.sleep(0, mails_for(pipeline, sentinel)), 30, "sentinel")

    clean = [
        m
        for m in await read_topic(pipeline.services.kafka_bootstrap, pipeline.topics.visits)
        if m.key == gfe_id.encode()
    ]
    assert len(clean) == 2  # the stage forgot it: state is bounded by the window
    assert (
        len(await pipeline.fetch("SELECT 1 FROM spakinect_events WHERE entity_id = $1", gfe_id))
        == 1
    )
    assert len(mails_for(pipeline, gfe_id)) == 1  # send-once state outlives the window
