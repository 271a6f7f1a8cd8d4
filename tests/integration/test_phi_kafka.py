"""Crypto-shredding on a real broker: sealed per patient, opened by the helper, forgotten by
destroying the patient's keys (docs/patient-data-on-kafka.md).

The pipeline's stages are not wired to it yet: this test publishes what the
ingress, the dedupe stage and a dead letter would, to three topics.
"""

from __future__ import annotations

import uuid

import orjson
import pytest
from aiokafka import AIOKafkaProducer

from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.phi.crypto import keyring_from, new_key_entry
from spakinect_pipeline.phi.kafka_client import SealedFields
from spakinect_pipeline.phi.kafka_keys import seal_payload, subject_of
from spakinect_pipeline.phi.key_store import KeyStore, destroy, ensure_key_topic, key_topic
from spakinect_pipeline.phi.paths import parse_paths
from spakinect_pipeline.topic_admin import ensure_topics
from tests.helpers import read_topic
from tests.services import Services

from .test_phi_store import patient_visit

pytestmark = pytest.mark.integration

INDEX = new_key_entry().split(":", 1)[1]
MASTER = keyring_from(new_key_entry("m1"), INDEX)
PATHS = parse_paths("data.notes")
JANE, OTHER = "jane.smith@example.com", "other.patient@example.com"


def envelope(gfe_id: str, email: str, notes: str) -> dict[str, object]:
    body = patient_visit(gfe_id, 1714675200000, email)
    body["data"]["notes"] = notes  # type: ignore[index]
    return {"event_id": f"visit.completed:{gfe_id}:1714675200000", "payload": body}


async def test_a_forget_makes_one_patient_unreadable_on_every_topic_and_no_other(
    services: Services,
) -> None:
    kafka = KafkaSettings(
        bootstrap_servers=[services.kafka_bootstrap], topic_prefix=f"k{uuid.uuid4().hex[:8]}."
    )
    topics = [f"{kafka.topic_prefix}{t}" for t in ("visit-completed", "visits", "dlq")]
    await ensure_topics(kafka, topics)
    await ensure_key_topic(kafka)
    store = KeyStore(kafka, MASTER)  # the ingress's
    producer = AIOKafkaProducer(**kafka.client_options(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for gfe_id, email, notes in (("gfe_j", JANE, "Jane Smith rang"), ("gfe_o", OTHER, "ok")):
            event = envelope(gfe_id, email, notes)
            key = await store.key_for(producer, subject_of(event["payload"], MASTER.index) or "")
            payload, sealed = seal_payload(str(event["event_id"]), event["payload"], key, PATHS)  # type: ignore[arg-type]
            value = orjson.dumps(
                {"envelope_version": 2, **event, "payload": payload, "sealed": sealed}
            )
            for topic in topics:
                await producer.send_and_wait(topic, value, key=gfe_id.encode())
        first_jane_key = await store.key_for(producer, MASTER.email_index(JANE))
    finally:
        await producer.stop()

    async def read_all() -> dict[str, list[dict[str, object]]]:
        return {
            t: [orjson.loads(m.value) for m in await read_topic(kafka.bootstrap_servers[0], t)]
            for t in topics
        }

    before = await read_all()
    raw_bytes = b" ".join(orjson.dumps(m) for ms in before.values() for m in ms)
    for needle in (b"Jane", b"jane.smith", b"other.patient", b"Smith rang"):
        assert needle not in raw_bytes  # what a consumer without the helper sees
    records = await read_topic(kafka.bootstrap_servers[0], key_topic(kafka.topic_prefix))
    assert all(b"@" not in r.key and b"example" not in r.key for r in records)

    helper = SealedFields(kafka, MASTER)  # a platform team's
    await helper.refresh()
    for topic, messages in before.items():
        opened = {m["payload"]["data"]["gfe_id"]: helper.open(m) for m in messages}
        assert opened["gfe_j"]["payload"]["data"]["patient_details"]["email"] == JANE, topic
        assert opened["gfe_j"]["payload"]["data"]["notes"] == "Jane Smith rang"
        assert opened["gfe_o"]["payload"]["data"]["patient_details"]["email"] == OTHER
        assert opened["gfe_j"]["forgotten"] is False

    destroyed = await destroy(kafka, [MASTER.email_index(JANE)])  # what `phi forget` will do
    assert destroyed == [first_jane_key.record_key]

    fresh = SealedFields(kafka, MASTER)  # a consumer that starts after the forget
    await fresh.refresh()
    await helper.refresh()  # and one that was running: the tombstone evicts the key
    after = await read_all()
    for reader in (fresh, helper):
        for topic, messages in after.items():
            opened = {m["payload"]["data"]["gfe_id"]: reader.open(m) for m in messages}
            jane = opened["gfe_j"]
            assert jane["forgotten"] is True, topic
            assert jane["payload"]["data"]["patient_details"] is None
            assert jane["payload"]["data"]["notes"] is None
            assert b"Jane" not in orjson.dumps(jane)
            assert opened["gfe_o"]["payload"]["data"]["patient_details"]["email"] == OTHER
            assert opened["gfe_o"]["forgotten"] is False
    await store.refresh()  # the ingress drops the destroyed key: Jane's next visit gets a new one
    assert store.get(first_jane_key.subject, first_jane_key.key_id) is None
