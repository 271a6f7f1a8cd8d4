"""The example consumer in examples/ works against the real clean topic."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from events.envelope import Disposition, encode_envelope
from events.registry import VISIT_COMPLETED
from examples.consume_visits import RecentIds, consume, patient_fields
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.phi.crypto import new_key_entry
from spakinect_pipeline.phi.kafka_client import SealedFields
from spakinect_pipeline.phi.kafka_keys import seal_payload
from spakinect_pipeline.phi.key_store import KeyStore, destroy, ensure_key_topic
from spakinect_pipeline.topic_admin import ensure_topics
from tests.helpers import committed_offsets, produce, read_topic
from tests.services import Services

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


async def test_example_consumer_opens_sealed_visits_with_the_master_key_only(
    services: Services,
) -> None:
    kafka = KafkaSettings(
        bootstrap_servers=[services.kafka_bootstrap], topic_prefix=f"x{uuid.uuid4().hex[:8]}."
    )
    topic = f"{kafka.topic_prefix}visits"
    await ensure_topics(kafka, [topic])
    await ensure_key_topic(kafka)
    master_entry = new_key_entry("m1")
    master = SealedFields.from_master_keys(kafka, master_entry).keys.master
    body = visit("gfe_sealed_ex", 1_714_675_300_000)
    event_id = "visit.completed:gfe_sealed_ex:1714675300000"
    producer = AIOKafkaProducer(bootstrap_servers=services.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        key = await KeyStore(kafka, master).key_for(producer, "subject-of-jane")
        payload, sealed = seal_payload(event_id, body, key)
        now = datetime.now(UTC)
        for value in (
            encode_envelope(event_id=event_id, event=VISIT_COMPLETED, received_at=now,
                            payload=payload, disposition=Disposition.APPLY, sealed=sealed),
            encode_envelope(event_id="visit.completed:gfe_plain:1", event=VISIT_COMPLETED,
                            received_at=now, payload=visit("gfe_plain", 1),
                            disposition=Disposition.APPLY),
        ):  # fmt: skip
            await producer.send_and_wait(topic, value, key=b"one-partition")  # in order
    finally:
        await producer.stop()

    async def read(fields: SealedFields | None) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []

        async def handle(envelope: dict[str, Any]) -> None:
            seen.append(envelope)

        group = f"example-{uuid.uuid4().hex[:6]}"
        await consume(services.kafka_bootstrap, topic, group, handle, stop_after=2, fields=fields)
        return seen

    opaque = await read(None)  # a platform team without the key: no crash, no patient
    assert [patient_fields(e) for e in opaque] == ["sealed", "plain"]
    assert str(opaque[0]["payload"]["data"]["patient_details"]).startswith("pk1:")
    opened = await read(SealedFields.from_master_keys(kafka, master_entry))
    assert [patient_fields(e) for e in opened] == ["opened", "plain"]
    assert opened[0]["payload"]["data"]["patient_details"] == body["data"]["patient_details"]
    await destroy(kafka, ["subject-of-jane"])
    gone = await read(SealedFields.from_master_keys(kafka, master_entry))
    assert [patient_fields(e) for e in gone] == ["forgotten", "plain"]
    assert gone[0]["payload"]["data"]["patient_details"] is None
