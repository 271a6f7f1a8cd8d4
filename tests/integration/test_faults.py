"""Failure paths of the running pipeline: Postgres down, SMTP down, malformed and poisoned
messages. Nothing acknowledged is lost, nothing is doubled, bad data goes to the DLQ."""

from __future__ import annotations

import asyncio
import os
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from events.envelope import Disposition, encode_envelope
from events.registry import TREATMENT_UPDATED, VISIT_COMPLETED
from spakinect_pipeline.config import KafkaSettings
from streams.dlq_tools import read_dead_letters, replay
from tests import helpers
from tests.helpers import read_topic, wait_until

from .conftest import Pipeline
from .test_pipeline import mails_for, visit

pytestmark = pytest.mark.integration
DECISIONS = ("requested", "approved", "conditionally_approved", "deferred")
OUTAGE_S = 20.0  # Postgres and SMTP are unreachable this long in the outage tests


async def dlq(pipeline: Pipeline, stage: str) -> list[dict[str, bytes]]:
    messages = await read_topic(pipeline.services.kafka_bootstrap, pipeline.topics.dlq)
    return [
        dict(m.headers) | {"_key": m.key or b""}
        for m in messages
        if dict(m.headers).get("stage") == stage.encode()
    ]


async def produce(pipeline: Pipeline, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    await helpers.produce(pipeline.services.kafka_bootstrap, topic, items)


def clean_envelope(body: dict[str, Any], disposition: Disposition = Disposition.APPLY) -> bytes:
    """What the dedupe stage would publish for ``body``."""
    entity = body["data"].get("gfe_id") or body["data"]["treatment_id"]
    return encode_envelope(
        event_id=f"{body['event']}:{entity}:{body['timestamp']}",
        event=body["event"],
        received_at=datetime.now(UTC),
        payload=body,
        disposition=disposition,
    )


async def test_postgres_outage_loses_and_doubles_nothing(pipeline: Pipeline) -> None:
    run = uuid.uuid4().hex[:6]
    gfe_ids = [f"gfe_pg_{run}_{i}" for i in range(20)]
    await pipeline.pg_proxy.down()
    down_since = time.monotonic()
    try:
        for gfe_id in gfe_ids:
            assert (await pipeline.post(visit(gfe_id))).status_code == 200
        await asyncio.sleep(4)  # the writer retries with backoff meanwhile
        # A writer stopped mid-retry must not ack the batch it could not write.
        await pipeline.stop("postgres")
        await pipeline.start("postgres")
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_since)))
        assert (
            await pipeline.fetch("SELECT 1 FROM gfe_visits WHERE gfe_id = ANY($1::text[])", gfe_ids)
            == []
        )
    finally:
        await pipeline.pg_proxy.up()
    await pipeline.wait_rows(
        "SELECT 1 FROM gfe_visits WHERE gfe_id = ANY($1::text[])", gfe_ids, count=20, timeout=60
    )
    events = await pipeline.fetch(
        "SELECT entity_id FROM spakinect_events WHERE entity_id = ANY($1::text[])", gfe_ids
    )
    assert sorted(r["entity_id"] for r in events) == sorted(gfe_ids)
    assert await dlq(pipeline, "postgres") == []


async def test_smtp_outage_delays_emails_and_sends_each_once(pipeline: Pipeline) -> None:
    gfe_ids = [f"gfe_smtp_{uuid.uuid4().hex[:6]}_{i}" for i in range(3)]
    await pipeline.smtp_proxy.down()
    down_since = time.monotonic()
    try:
        for gfe_id in gfe_ids:
            assert (await pipeline.post(visit(gfe_id))).status_code == 200
        await pipeline.wait_rows(
            "SELECT 1 FROM gfe_visits WHERE gfe_id = ANY($1::text[])", gfe_ids, count=3
        )
        await asyncio.sleep(3)
        await pipeline.stop("email")  # stopped mid-retry: nothing acked, nothing lost
        await pipeline.start("email")
        await asyncio.sleep(max(0.0, OUTAGE_S - (time.monotonic() - down_since)))
        assert all(mails_for(pipeline, g) == [] for g in gfe_ids)
    finally:
        await pipeline.smtp_proxy.up()

    async def all_sent() -> bool:
        return all(mails_for(pipeline, g) for g in gfe_ids)

    await wait_until(all_sent, 60, "every email after SMTP came back")
    await pipeline.consumed("email", pipeline.topics.clean(VISIT_COMPLETED))
    assert [len(mails_for(pipeline, g)) for g in gfe_ids] == [1, 1, 1]
    assert await dlq(pipeline, "email") == []


async def test_malformed_raw_message_goes_to_the_dlq_and_the_stage_goes_on(
    pipeline: Pipeline,
) -> None:
    key = f"gfe_bad_{uuid.uuid4().hex[:6]}".encode()
    await produce(pipeline, pipeline.topics.raw(VISIT_COMPLETED), [(key, b"\x00not an envelope")])
    gfe_id = f"gfe_after_bad_{uuid.uuid4().hex[:6]}"
    assert (await pipeline.post(visit(gfe_id))).status_code == 200
    await pipeline.wait_rows("SELECT 1 FROM gfe_visits WHERE gfe_id = $1", gfe_id)
    (headers,) = [h for h in await dlq(pipeline, "dedupe") if h["_key"] == key]
    assert headers["error_type"] == b"EnvelopeInvalid"
    assert headers["source_topic"] == pipeline.topics.raw(VISIT_COMPLETED).encode()
    assert {"error", "source_partition", "source_offset", "attempts"} <= set(headers)

    # A dedupe failure is replayed to the raw topic it came from.
    kafka = KafkaSettings(
        bootstrap_servers=[pipeline.services.kafka_bootstrap],
        topic_prefix=pipeline.env["KAFKA_TOPIC_PREFIX"],
    )
    letters = [x for x in await read_dead_letters(kafka) if x.key == key]
    assert await replay(kafka, letters, progress=False) == 1
    raw = [
        m
        for m in await read_topic(
            pipeline.services.kafka_bootstrap, pipeline.topics.raw(VISIT_COMPLETED)
        )
        if m.key == key
    ]
    assert [dict(m.headers).get("replayed_from_dlq") is not None for m in raw] == [False, True]
    assert raw[1].value == b"\x00not an envelope"


async def test_one_poisoned_row_is_dead_lettered_and_the_rest_written(
    pipeline: Pipeline,
) -> None:
    run = uuid.uuid4().hex[:6]
    items = []
    for i in range(11):
        gfe_id = f"gfe_poison_{run}_{i}"
        body = visit(gfe_id, location_id="loc\x00nul" if i == 5 else "loc_ok")
        items.append((gfe_id.encode(), clean_envelope(body)))
    await produce(pipeline, pipeline.topics.clean(VISIT_COMPLETED), items)
    await pipeline.wait_rows(
        "SELECT 1 FROM gfe_visits WHERE gfe_id LIKE $1", f"gfe_poison_{run}_%", count=10
    )
    (headers,) = await wait_until(
        lambda: _dlq_for(pipeline, f"gfe_poison_{run}_5".encode()), 30, "the DLQ message"
    )
    assert headers["error_type"] == b"InvalidBatch"
    assert b"SQLSTATE 22" in headers["error"]
    assert headers["source_topic"] == pipeline.topics.clean(VISIT_COMPLETED).encode()
    assert (
        await pipeline.fetch(
            "SELECT 1 FROM spakinect_events WHERE entity_id = $1", f"gfe_poison_{run}_5"
        )
        == []
    )


async def _dlq_for(pipeline: Pipeline, key: bytes) -> list[dict[str, bytes]]:
    return [h for h in await dlq(pipeline, "postgres") if h["_key"] == key]


async def test_poisoned_row_in_100_is_isolated_then_replayed_after_the_fix(
    pipeline: Pipeline,
) -> None:
    run = uuid.uuid4().hex[:6]
    blocked = f"loc_blocked_{run}"
    # A database rule the poisoned row breaks (SQLSTATE 23514): the "cause" to fix later.
    await pipeline.fetch(
        f"ALTER TABLE gfe_visits ADD CONSTRAINT block_{run} CHECK (location_id <> '{blocked}')"
    )
    gfe_ids = [f"gfe_batch_{run}_{i}" for i in range(100)]
    responses = await asyncio.gather(
        *(
            pipeline.post(visit(g, location_id=blocked if i == 37 else "loc_ok"))
            for i, g in enumerate(gfe_ids)
        )
    )
    assert {r.status_code for r in responses} == {200}
    await pipeline.wait_rows(
        "SELECT 1 FROM gfe_visits WHERE gfe_id = ANY($1::text[])", gfe_ids, count=99, timeout=60
    )
    poisoned_id = f"visit.completed:{gfe_ids[37]}:1714675200000"
    (headers,) = await wait_until(
        lambda: _dlq_for(pipeline, gfe_ids[37].encode()), 30, "the DLQ message"
    )
    assert headers["error_type"] == b"InvalidBatch"
    assert b"23514" in headers["error"]

    listing = await cli(pipeline, "dlq", "list", "--stage", "postgres")
    assert poisoned_id in listing
    assert "Jane" not in listing
    assert "jane.smith" not in listing

    await pipeline.fetch(f"ALTER TABLE gfe_visits DROP CONSTRAINT block_{run}")  # the fix
    replayed = await cli(pipeline, "dlq", "replay", "--event-id", poisoned_id)
    assert "replayed 1 of 1" in replayed
    await pipeline.wait_rows("SELECT 1 FROM gfe_visits WHERE gfe_id = $1", gfe_ids[37])
    # To the retry topic only the Postgres writer reads: not to the clean topic again.
    bootstrap, key = pipeline.services.kafka_bootstrap, gfe_ids[37].encode()
    retried = [
        m for m in await read_topic(bootstrap, pipeline.topics.retry("postgres")) if m.key == key
    ]
    assert len(retried) == 1
    assert dict(retried[0].headers)["event_id"] == poisoned_id.encode()
    clean = [
        m
        for m in await read_topic(bootstrap, pipeline.topics.clean(VISIT_COMPLETED))
        if m.key == key
    ]
    assert len(clean) == 1
    events = await pipeline.fetch(
        "SELECT 1 FROM spakinect_events WHERE entity_id = ANY($1::text[])", gfe_ids
    )
    assert len(events) == 100


async def cli(pipeline: Pipeline, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        *args,
        env={**os.environ, **pipeline.env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
    return output.decode()


async def visit_state(pipeline: Pipeline, gfe_id: str) -> tuple[str, list[tuple[str, str]]]:
    (row,) = await pipeline.fetch("SELECT event_id FROM gfe_visits WHERE gfe_id = $1", gfe_id)
    treatments = await pipeline.fetch(
        "SELECT treatment_name, decision FROM gfe_visit_treatments WHERE gfe_id = $1", gfe_id
    )
    return row["event_id"], sorted((r["treatment_name"], r["decision"]) for r in treatments)


async def test_writer_applies_only_newer_visits_and_replaces_their_treatments(
    pipeline: Pipeline,
) -> None:
    """Straight to the clean topic, each in its own batch: the writer's own guard decides,
    whatever the disposition says."""
    gfe_id = f"gfe_guard_{uuid.uuid4().hex[:6]}"

    def visit_with(timestamp: int, **decisions: list[str]) -> dict[str, Any]:
        lists = {f"{d}_treatments": decisions.get(d, []) for d in DECISIONS}
        return visit(gfe_id, timestamp, **lists)

    first = visit_with(1_714_675_200_000, approved=["Botox Injection"])
    newer = visit_with(1_714_675_400_000, requested=["Lip Filler"], deferred=["Lip Filler"])
    # Older than `newer`, yet marked apply.
    older = visit_with(1_714_675_300_000, approved=["Chemical Peel"])

    async def write(body: dict[str, Any]) -> str:
        event_id = f"visit.completed:{gfe_id}:{body['timestamp']}"
        await produce(
            pipeline,
            pipeline.topics.clean(VISIT_COMPLETED),
            [(gfe_id.encode(), clean_envelope(body))],
        )
        await pipeline.wait_rows("SELECT 1 FROM spakinect_events WHERE event_id = $1", event_id)
        return event_id

    first_id = await write(first)
    assert await visit_state(pipeline, gfe_id) == (first_id, [("Botox Injection", "approved")])
    newer_id = await write(newer)
    newer_rows = [("Lip Filler", "deferred"), ("Lip Filler", "requested")]
    assert await visit_state(pipeline, gfe_id) == (newer_id, newer_rows)
    await write(older)  # recorded (same transaction as the guard), not applied
    assert await visit_state(pipeline, gfe_id) == (newer_id, newer_rows)

    treatment_id = f"t_guard_{uuid.uuid4().hex[:6]}"
    for stamp, action in ((1_714_000_002_000, "updated"), (1_714_000_001_000, "created")):
        body = {
            "event": "treatment.updated",
            "timestamp": stamp,
            "success": True,
            "data": {"treatment_id": treatment_id, "treatment_name": action, "action": action},
        }
        value = clean_envelope(body)
        await produce(
            pipeline, pipeline.topics.clean(TREATMENT_UPDATED), [(treatment_id.encode(), value)]
        )
        await pipeline.wait_rows(
            "SELECT 1 FROM spakinect_events WHERE event_id = $1",
            f"treatment.updated:{treatment_id}:{stamp}",
        )
    (row,) = await pipeline.fetch(
        "SELECT event_id, last_action FROM treatments WHERE treatment_id = $1", treatment_id
    )
    assert (row["event_id"], row["last_action"]) == (
        f"treatment.updated:{treatment_id}:1714000002000",
        "updated",
    )
