"""Two workers per stage split the partitions; SIGKILL one of each mid-load and the other
takes over its partitions and table state: no lost row, no doubled row, at most one repeated
email for the killed email worker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter

import pytest

from events.registry import VISIT_COMPLETED
from streams.stages import STAGE_NAMES as STAGES
from tests.helpers import read_topic, wait_group_stable

from .conftest import Pipeline
from .test_pipeline import visit

pytestmark = pytest.mark.integration
PIPELINE_ENV = {"KAFKA_PARTITIONS": "4", "STREAMS_SESSION_TIMEOUT_S": "6"}


async def test_killing_one_of_two_workers_per_stage_loses_and_doubles_nothing(
    pipeline: Pipeline,
) -> None:
    await asyncio.gather(*(pipeline.start(f"{s}-2", stage=s, members=2) for s in STAGES))
    run = uuid.uuid4().hex[:6]
    gfe_ids = [f"gfe_scale_{run}_{i}" for i in range(200)]

    async def load() -> None:
        for gfe_id in gfe_ids:
            assert (await pipeline.post(visit(gfe_id))).status_code == 200
            await asyncio.sleep(0.02)

    traffic = asyncio.create_task(load())
    await asyncio.sleep(1.5)
    await asyncio.gather(*(pipeline.kill(f"{s}-2") for s in STAGES))  # mid-load, mid-batch
    await traffic
    for stage in STAGES:  # the survivor owns every partition once the dead member expires
        await wait_group_stable(pipeline.services.kafka_bootstrap, pipeline.group(stage), 60, 1)

    with contextlib.suppress(AssertionError):  # reported below, with where the events stopped
        await pipeline.wait_rows(
            "SELECT entity_id FROM spakinect_events WHERE entity_id = ANY($1::text[])",
            gfe_ids,
            count=200,
            timeout=90,
        )
    rows = await pipeline.fetch(
        "SELECT entity_id FROM spakinect_events WHERE entity_id = ANY($1::text[])", gfe_ids
    )
    missing = sorted(set(gfe_ids) - {r["entity_id"] for r in rows})
    assert not missing, await where_lost(pipeline, missing)
    visits = await pipeline.fetch(
        "SELECT 1 FROM gfe_visits WHERE gfe_id = ANY($1::text[])", gfe_ids
    )
    assert len(visits) == 200

    async def all_emailed() -> bool:
        subjects = Counter(str(m["Subject"]) for m in pipeline.mails())
        return all(any(f"visit {g} at" in s for s in subjects) for g in gfe_ids)

    from tests.helpers import wait_until

    await wait_until(all_emailed, 90, "an email for every visit")
    per_visit = Counter(
        g for m in pipeline.mails() for g in gfe_ids if f"visit {g} at" in str(m["Subject"])
    )
    assert sum(count - 1 for count in per_visit.values()) <= 1  # one killed email worker

    # The dedupe state moved with the partitions: re-deliveries are still dropped.
    await pipeline.consumed("dedupe", pipeline.topics.raw(VISIT_COMPLETED))
    before = len(
        await read_topic(pipeline.services.kafka_bootstrap, pipeline.topics.clean(VISIT_COMPLETED))
    )
    for gfe_id in gfe_ids[:40]:
        assert (await pipeline.post(visit(gfe_id))).status_code == 200
    await pipeline.consumed("dedupe", pipeline.topics.raw(VISIT_COMPLETED))
    after = len(
        await read_topic(pipeline.services.kafka_bootstrap, pipeline.topics.clean(VISIT_COMPLETED))
    )
    assert after == before


async def where_lost(pipeline: Pipeline, gfe_ids: list[str]) -> str:
    """Which raw partitions/offsets the lost events had, and whether dedupe published them."""
    bootstrap = pipeline.services.kafka_bootstrap
    lost = set(gfe_ids)
    raw = [
        (m.partition, m.offset)
        for m in await read_topic(bootstrap, pipeline.topics.raw(VISIT_COMPLETED))
        if json.loads(m.value)["payload"]["data"]["gfe_id"] in lost
    ]
    clean = {
        json.loads(m.value)["payload"]["data"]["gfe_id"]
        for m in await read_topic(bootstrap, pipeline.topics.clean(VISIT_COMPLETED))
    }
    return (
        f"{len(gfe_ids)} events lost; raw (partition, offset): {sorted(raw)}; "
        f"of them on the clean topic: {len(lost & clean)}"
    )
