"""The console's phi role sees sealed Kafka bodies opened, or "forgotten" (pure, fake keys)."""

import orjson

from console.sealed_body import FORGOTTEN, phi_body, shown_envelope
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.phi.kafka_client import SealedFields

from .test_phi_opening import MASTER, FakeKeys, sealed_record


def fields_with(keys: FakeKeys) -> SealedFields:
    fields = SealedFields(KafkaSettings(bootstrap_servers=["127.0.0.1:1"]), MASTER)
    fields.keys = keys  # type: ignore[assignment]
    return fields


def as_dict(record) -> dict:
    return orjson.loads(record.envelope.model_dump_json())


def test_sealed_paths_open_for_the_phi_role_and_read_forgotten_once_the_key_is_gone():
    record, key, body = sealed_record()
    envelope = as_dict(record)
    keys = FakeKeys(key)
    shown = shown_envelope(envelope, fields_with(keys))
    assert shown["payload"]["data"]["patient_details"] == body["data"]["patient_details"]
    keys.destroy(key)
    gone = shown_envelope(envelope, fields_with(keys))
    assert gone["payload"]["data"]["patient_details"] == FORGOTTEN
    assert gone["payload"]["data"]["notes"] == FORGOTTEN
    assert "Jane" not in orjson.dumps(gone).decode()


def test_a_damaged_or_unknown_field_stays_sealed():
    record, key, _ = sealed_record()
    envelope = as_dict(record)
    assert shown_envelope(envelope, fields_with(FakeKeys())) == envelope  # key unknown
    moved = {**envelope, "event_id": "visit.completed:gfe_other:1"}
    assert shown_envelope(moved, fields_with(FakeKeys(key))) == moved
    other, _, _ = sealed_record(ts=1, key=key)  # a field moved in from another event: it stays
    damaged = {**envelope, "payload": dict(envelope["payload"])}
    damaged["payload"]["data"] = {
        **envelope["payload"]["data"],
        "notes": as_dict(other)["payload"]["data"]["notes"],
    }
    shown = shown_envelope(damaged, fields_with(FakeKeys(key)))
    assert shown["payload"]["data"]["patient_details"]["first_name"] == "Jane"
    assert shown["payload"]["data"]["notes"].startswith("pk1:")


async def test_without_a_master_key_the_body_is_shown_as_it_is_sealed():
    record, key, _ = sealed_record()
    value = record.envelope.model_dump_json().encode()
    assert await phi_body(value, None) == value.decode()
    assert "pk1:" in await phi_body(value, None)
    opened = await phi_body(value, fields_with(FakeKeys(key)))
    assert "pk1:" not in opened
    assert "Jane" in opened
    assert await phi_body(b"not json", fields_with(FakeKeys(key))) == "not json"
