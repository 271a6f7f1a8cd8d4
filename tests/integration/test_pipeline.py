"""The product end to end: vendor webhook in, rows in Postgres, one email out."""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from faust.types import TP

from events.registry import VISIT_COMPLETED
from events.samples import SAMPLES
from events.samples import sample_visit as visit
from sinks.postgres.protect import open_visit
from spakinect_pipeline.config import KafkaSettings
from streams import faust_adapter
from streams.batch_table import BatchTable
from streams.faust_app import create_faust_app, json_table
from streams.settings import StreamsSettings
from tests.helpers import produce, read_topic, wait_until

from .conftest import Pipeline

pytestmark = pytest.mark.integration


def mails_for(pipeline: Pipeline, gfe_id: str) -> list[object]:
    return [m for m in pipeline.mails() if f"visit {gfe_id} at" in str(m["Subject"])]


async def test_vendor_sample_becomes_rows_and_one_email(pipeline: Pipeline) -> None:
    response = await pipeline.post(SAMPLES["visit.completed"])
    assert response.status_code == 200
    assert response.json() == {
        "received": True,
        "event_id": "visit.completed:gfe_abc123xyz789:1714675200000",
    }

    (visit_row,) = await pipeline.wait_rows(
        "SELECT * FROM gfe_visits WHERE gfe_id = $1", "gfe_abc123xyz789"
    )
    assert visit_row["patient_email"].startswith("phi1:")  # sealed at rest
    patient = open_visit(visit_row, pipeline.keyring)
    assert patient["patient_email"] == "jane.smith@example.com"
    assert patient["patient_name"] == "Jane Smith"
    assert visit_row["pdf_link"] == "https://example-cdn.com/gfe/gfe_abc123xyz789.pdf"
    treatments = await pipeline.fetch(
        "SELECT treatment_name, decision FROM gfe_visit_treatments WHERE gfe_id = $1",
        "gfe_abc123xyz789",
    )
    assert sorted(map(tuple, treatments)) == [
        ("Botox Injection", "approved"),
        ("Botox Injection", "requested"),
        ("Dermal Filler", "conditionally_approved"),
        ("Dermal Filler", "requested"),
    ]
    (event_row,) = await pipeline.fetch(
        "SELECT disposition, success FROM spakinect_events WHERE event_id = $1",
        "visit.completed:gfe_abc123xyz789:1714675200000",
    )
    assert event_row["disposition"] == "apply"
    assert event_row["success"] is True

    await wait_until(
        lambda: asyncio.sleep(0, mails_for(pipeline, "gfe_abc123xyz789")), 30, "the clinic email"
    )
    await pipeline.consumed(
        "email", pipeline.topics.clean(VISIT_COMPLETED)
    )  # handled: no email to come
    messages = mails_for(pipeline, "gfe_abc123xyz789")
    assert len(messages) == 1
    body = messages[0].get_body(("plain",)).get_content()
    assert "https://example-cdn.com/gfe/gfe_abc123xyz789.pdf" in body
    assert "Jane Smith" in body


async def test_ten_deliveries_concurrently_again_and_after_restart_give_one_of_each(
    pipeline: Pipeline,
) -> None:
    gfe_id = f"gfe_dup_{uuid.uuid4().hex[:6]}"
    body = visit(gfe_id)
    event_id = f"visit.completed:{gfe_id}:1714675200000"

    responses = await asyncio.gather(*(pipeline.post(body) for _ in range(10)))
    assert {r.status_code for r in responses} == {200}
    await pipeline.wait_rows("SELECT 1 FROM spakinect_events WHERE event_id = $1", event_id)
    await wait_until(lambda: asyncio.sleep(0, mails_for(pipeline, gfe_id)), 30, "the email")

    for _ in range(10):
        assert (await pipeline.post(body)).status_code == 200
    # Its local state deleted: what it remembers after the restart comes from the changelog.
    await pipeline.restart("dedupe", wipe_state=True)
    responses = await asyncio.gather(*(pipeline.post(body) for _ in range(10)))
    assert {r.status_code for r in responses} == {200}

    await pipeline.consumed("dedupe", pipeline.topics.raw(VISIT_COMPLETED))
    await pipeline.consumed("email", pipeline.topics.clean(VISIT_COMPLETED))
    clean = [
        m
        for m in await read_topic(
            pipeline.services.kafka_bootstrap, pipeline.topics.clean(VISIT_COMPLETED)
        )
        if m.key == gfe_id.encode()
    ]
    assert len(clean) == 1
    assert dict(clean[0].headers)["disposition"] == b"apply"
    raw = [
        m
        for m in await read_topic(
            pipeline.services.kafka_bootstrap, pipeline.topics.raw(VISIT_COMPLETED)
        )
        if m.key == gfe_id.encode()
    ]
    assert len(raw) == 30  # the raw topic keeps every delivery; the clean one doesn't
    assert len(mails_for(pipeline, gfe_id)) == 1


async def test_duplicates_waiting_in_every_partition_are_dropped_in_one_batch(
    pipeline: Pipeline,
) -> None:
    """Dedupe decides whole batches: each event must be checked in its own partition's state."""
    run = uuid.uuid4().hex[:6]
    gfe_ids = [f"gfe_batch_{run}_{i}" for i in range(40)]
    responses = await asyncio.gather(*(pipeline.post(visit(g)) for g in gfe_ids * 2))
    assert {r.status_code for r in responses} == {200}
    await pipeline.wait_rows(
        "SELECT 1 FROM spakinect_events WHERE entity_id = ANY($1::text[])", gfe_ids, count=40
    )
    await pipeline.stop("dedupe")  # the next deliveries wait in the raw topic: one big batch
    again = await asyncio.gather(*(pipeline.post(visit(g)) for g in gfe_ids * 2))
    assert {r.status_code for r in again} == {200}
    await pipeline.start("dedupe")
    await pipeline.consumed("dedupe", pipeline.topics.raw(VISIT_COMPLETED))
    clean = [
        m
        for m in await read_topic(
            pipeline.services.kafka_bootstrap, pipeline.topics.clean(VISIT_COMPLETED)
        )
        if m.key.decode() in set(gfe_ids)
    ]
    assert sorted(m.key.decode() for m in clean) == sorted(gfe_ids)
    assert {m.partition for m in clean} == {0, 1, 2}


async def test_a_restarted_dedupe_worker_resumes_from_its_own_store_and_offset(
    pipeline: Pipeline,
) -> None:
    """The batch path writes each entry and its changelog offset to RocksDB in one write
    batch: after a clean stop the store holds the entry at the changelog's newest offset
    (Faust resumes reading there), and a retry after the restart is still a duplicate."""
    gfe_id = f"gfe_resume_{uuid.uuid4().hex[:6]}"
    body = visit(gfe_id)
    assert (await pipeline.post(body)).status_code == 200
    await pipeline.consumed("dedupe", pipeline.topics.raw(VISIT_COMPLETED))
    await pipeline.stop("dedupe")

    streams = StreamsSettings(
        app_id=pipeline.env["STREAMS_APP_ID"],
        state_dir=Path(pipeline.env["STREAMS_STATE_DIR"]) / "dedupe",
    )
    table = BatchTable(
        json_table(
            create_faust_app("dedupe", streams, KafkaSettings()),
            "entities",
            int(pipeline.env["KAFKA_PARTITIONS"]),
        )
    )
    key = f"visit.completed:{gfe_id}"
    changelog = [
        m
        for m in await read_topic(pipeline.services.kafka_bootstrap, table.topic)
        if m.key == orjson.dumps(key)
    ]
    (written,) = changelog
    store: Any = table.table.data
    try:
        faust_adapter.open_partition_db(
            table.table, written.partition
        )  # as Faust's assignment does
        (entry,) = table.get_many(written.partition, [key])
        assert entry is not None
        assert entry["p"] == written.partition
        newest = max(
            m.offset
            for m in await read_topic(pipeline.services.kafka_bootstrap, table.topic)
            if m.partition == written.partition
        )
        assert store.persisted_offset(TP(table.topic, written.partition)) == newest
    finally:
        faust_adapter.close_all(
            table.table
        )  # release the RocksDB locks before the worker opens them

    await pipeline.start("dedupe")
    assert (await pipeline.post(body)).status_code == 200
    await pipeline.consumed("dedupe", pipeline.topics.raw(VISIT_COMPLETED))
    clean = [
        m
        for m in await read_topic(
            pipeline.services.kafka_bootstrap, pipeline.topics.clean(VISIT_COMPLETED)
        )
        if m.key == gfe_id.encode()
    ]
    assert len(clean) == 1


@pytest.mark.parametrize("order", list(itertools.permutations(range(3))))
async def test_treatment_updates_in_any_order_end_in_the_newest_state(
    pipeline: Pipeline, order: tuple[int, ...]
) -> None:
    treatment_id = f"t_{uuid.uuid4().hex[:8]}"
    actions = [
        ("created", 1_714_000_000_000),
        ("updated", 1_714_000_001_000),
        ("deleted", 1_714_000_002_000),
    ]
    for index in order:
        action, timestamp = actions[index]
        body = {
            "event": "treatment.updated",
            "timestamp": timestamp,
            "success": True,
            "data": {
                "treatment_id": treatment_id,
                "treatment_name": f"T {action}",
                "action": action,
            },
        }
        response = await pipeline.post(body, "/webhooks/treatment-updated")
        assert response.status_code == 200
    await pipeline.wait_rows(
        "SELECT 1 FROM spakinect_events WHERE entity_id = $1", treatment_id, count=3
    )
    (row,) = await pipeline.fetch("SELECT * FROM treatments WHERE treatment_id = $1", treatment_id)
    assert (row["last_action"], row["deleted"], row["treatment_name"]) == (
        "deleted",
        True,
        "T deleted",
    )
    # Each arrival is applied when newer than every earlier arrival, else marked stale.
    expected = {
        index: "apply" if index == max(order[: i + 1]) else "stale" for i, index in enumerate(order)
    }
    dispositions = await pipeline.fetch(
        "SELECT disposition FROM spakinect_events WHERE entity_id = $1 ORDER BY occurred_at",
        treatment_id,
    )
    assert [r["disposition"] for r in dispositions] == [expected[i] for i in range(3)]


async def test_stale_and_unsuccessful_visits_are_recorded_never_applied_or_emailed(
    pipeline: Pipeline,
) -> None:
    gfe_id = f"gfe_old_{uuid.uuid4().hex[:6]}"
    newer, older = (
        visit(gfe_id, 1_714_675_300_000),
        visit(gfe_id, 1_714_675_200_000, location_id="loc_old"),
    )
    failed = {
        "event": "visit.completed",
        "timestamp": 1_714_675_400_000,
        "success": False,
        "data": {"gfe_id": gfe_id},
    }
    for body in (newer, older, failed):
        assert (await pipeline.post(body)).status_code == 200
    rows = await pipeline.wait_rows(
        "SELECT disposition FROM spakinect_events WHERE entity_id = $1 ORDER BY occurred_at",
        gfe_id,
        count=3,
    )
    assert [r["disposition"] for r in rows] == ["stale", "apply", "unsuccessful"]
    (row,) = await pipeline.fetch(
        "SELECT location_id, completed_at FROM gfe_visits WHERE gfe_id = $1", gfe_id
    )
    assert row["location_id"] == "loc_12345"
    await wait_until(lambda: asyncio.sleep(0, mails_for(pipeline, gfe_id)), 30, "the email")
    await pipeline.consumed("email", pipeline.topics.clean(VISIT_COMPLETED))
    assert len(mails_for(pipeline, gfe_id)) == 1


async def test_stopped_email_stage_does_not_hold_back_postgres(pipeline: Pipeline) -> None:
    gfe_id = f"gfe_nomail_{uuid.uuid4().hex[:6]}"
    await pipeline.stop("email")
    try:
        assert (await pipeline.post(visit(gfe_id))).status_code == 200
        await pipeline.wait_rows("SELECT 1 FROM gfe_visits WHERE gfe_id = $1", gfe_id, timeout=15)
    finally:
        await pipeline.start("email")
    await wait_until(
        lambda: asyncio.sleep(0, mails_for(pipeline, gfe_id)),
        60,
        "the email after the stage restarted",
    )
    await pipeline.consumed("email", pipeline.topics.clean(VISIT_COMPLETED))
    assert len(mails_for(pipeline, gfe_id)) == 1


async def test_a_visit_repeated_after_a_restart_is_not_emailed_again(pipeline: Pipeline) -> None:
    """The clean topic may repeat a message after a crash: send-once state outlives restarts."""
    gfe_id = f"gfe_again_{uuid.uuid4().hex[:6]}"
    assert (await pipeline.post(visit(gfe_id))).status_code == 200
    await wait_until(lambda: asyncio.sleep(0, mails_for(pipeline, gfe_id)), 30, "the email")
    (message,) = [
        m
        for m in await read_topic(
            pipeline.services.kafka_bootstrap, pipeline.topics.clean(VISIT_COMPLETED)
        )
        if m.key == gfe_id.encode()
    ]
    await pipeline.restart("email", wipe_state=True)  # send-once state from the changelog
    await produce(
        pipeline.services.kafka_bootstrap,
        pipeline.topics.clean(VISIT_COMPLETED),
        [(message.key, message.value)],
    )
    await pipeline.consumed("email", pipeline.topics.clean(VISIT_COMPLETED))
    assert len(mails_for(pipeline, gfe_id)) == 1
    for name in ("dedupe", "postgres", "email"):
        log_text = "".join(p.read_text() for p in pipeline.logs.glob(f"{name}-*.log"))
        assert "Crashed" not in log_text, f"a {name} agent crashed; see {pipeline.logs}"


async def test_send_once_state_goes_to_the_changelog_partition_of_its_event(
    pipeline: Pipeline,
) -> None:
    """The email stage's ``sent`` writes land in their source event's partition of the
    changelog (a restarted or moved partition recovers exactly its events' state)."""
    ids = [f"gfe_part_{uuid.uuid4().hex[:6]}" for _ in range(8)]
    for gfe_id in ids:
        assert (await pipeline.post(visit(gfe_id))).status_code == 200
    await wait_until(
        lambda: asyncio.sleep(0, all(mails_for(pipeline, g) for g in ids)), 60, "the emails"
    )
    bootstrap = pipeline.services.kafka_bootstrap
    source = {
        m.key.decode(): m.partition
        for m in await read_topic(bootstrap, pipeline.topics.clean(VISIT_COMPLETED))
        if m.key.decode() in ids
    }
    changelog = f"{pipeline.group('email')}-sent-changelog"
    written = {
        json.loads(m.key).split(":")[1]: m.partition
        for m in await read_topic(bootstrap, changelog)
        if json.loads(m.key).split(":")[1] in ids
    }
    assert written == source
    assert len(set(source.values())) > 1  # spread over partitions, or this would prove little


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in Prometheus text (0 when absent)."""
    for line in text.splitlines():
        if line.startswith(name + "{") and all(f'{k}="{v}"' in line for k, v in labels.items()):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


async def test_workers_serve_metrics(pipeline: Pipeline) -> None:
    gfe_id = f"gfe_metrics_{uuid.uuid4().hex[:6]}"
    for _ in range(3):
        assert (await pipeline.post(visit(gfe_id))).status_code == 200
    await pipeline.wait_rows("SELECT 1 FROM gfe_visits WHERE gfe_id = $1", gfe_id)
    await wait_until(lambda: asyncio.sleep(0, mails_for(pipeline, gfe_id)), 30, "the email")

    dedupe = await pipeline.metrics("dedupe")
    assert metric(dedupe, "streams_events_total", stage="dedupe", outcome="duplicates") >= 2
    assert metric(dedupe, "streams_events_total", stage="dedupe", outcome="published_apply") >= 1
    assert "streams_consumer_lag{" in dedupe
    postgres = await pipeline.metrics("postgres")
    assert metric(postgres, "sink_batch_size_count", stage="postgres") >= 1
    assert metric(postgres, "streams_events_total", stage="postgres", outcome="written") >= 1
    email = await pipeline.metrics("email")
    assert metric(email, "streams_events_total", stage="email", outcome="sent_clinic") >= 1
    for text in (dedupe, postgres, email):
        assert gfe_id not in text
        assert "Jane" not in text
