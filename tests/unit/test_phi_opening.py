"""Stages opening sealed envelopes (pure, fakes for the key topic): opened, forgotten,
unknown (refresh, then retry, then dead-letter), damaged (dead-letter), plaintext untouched."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from events.envelope import Envelope, Record
from events.messages import SourceMessage
from sinks.base import InvalidBatch, RetryableError
from sinks.email.forgotten import SkipForgotten
from sinks.postgres.protect import Protection, protect
from sinks.postgres.rows import batch_rows
from sinks.postgres.writer import forgotten_visit
from sinks.sealed import open_batch
from spakinect_pipeline.config import ConfigError, KafkaSettings
from spakinect_pipeline.phi.crypto import PhiDecryptError, keyring_from, new_key_entry
from spakinect_pipeline.phi.kafka_keys import DataKey, new_data_key, seal_payload, subject_of
from spakinect_pipeline.phi.opening import Status, open_fields
from spakinect_pipeline.phi.paths import parse_paths
from spakinect_pipeline.phi.sealed_reader import NO_MASTER, SealedReader, stage_reader
from spakinect_pipeline.phi.settings import PhiSettings

from .test_email_forgotten import FakeMarkers, FakeSink
from .test_rows import visit

INDEX = new_key_entry().split(":", 1)[1]
MASTER = keyring_from(new_key_entry("m1"), INDEX)
KEYRING = keyring_from(new_key_entry("p1"), INDEX)
NOTES = parse_paths("data.notes")


class FakeKeys:
    """The key topic as a reader sees it; ``arriving`` keys show up at the next refresh."""

    def __init__(self, *keys: DataKey) -> None:
        self.keys = {(k.subject, k.key_id): k for k in keys}
        self.arriving: list[DataKey] = []
        self.tombstoned: set[tuple[str, str]] = set()
        self.refreshes = 0
        self.broken: set[tuple[str, str]] = set()

    def get(self, subject: str, key_id: str) -> DataKey | None:
        if (subject, key_id) in self.broken:
            raise PhiDecryptError("key record is damaged")
        return self.keys.get((subject, key_id))

    def destroyed(self, subject: str, key_id: str) -> bool:
        return (subject, key_id) in self.tombstoned

    def destroy(self, key: DataKey) -> None:
        del self.keys[(key.subject, key.key_id)]
        self.tombstoned.add((key.subject, key.key_id))

    async def refresh(self) -> None:
        self.refreshes += 1
        for key in self.arriving:
            self.keys[(key.subject, key.key_id)] = key
        self.arriving = []

    def verify_master(self) -> bool:
        return True


def sealed_record(ts: int = 1714675200000, gfe_id: str = "gfe_abc123xyz789", key=None):
    body = visit(ts, gfe_id=gfe_id, notes="Jane rang")
    key = key or new_data_key(subject_of(body, MASTER.index) or "")
    event_id = f"visit.completed:{gfe_id}:{ts}"
    payload, sealed = seal_payload(event_id, body, key, NOTES)
    envelope = Envelope(
        envelope_version=2,
        event_id=event_id,
        event="visit.completed",
        received_at=datetime.now(UTC),
        disposition="apply",
        sealed=tuple(sealed),
        payload=payload,
    )
    return Record(envelope, SourceMessage("t", 0, 7, None, b"sealed bytes", [])), key, body


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def reader(keys: FakeKeys, clock: Clock | None = None) -> SealedReader:
    kafka = KafkaSettings(bootstrap_servers=["127.0.0.1:1"])
    return SealedReader(
        kafka,
        MASTER,
        store=keys,
        clock=clock or Clock(),
        unknown_grace_s=60,  # type: ignore[arg-type]
    )


def test_a_sealed_envelope_opens_with_its_key_and_a_destroyed_key_means_forgotten():
    record, key, body = sealed_record()
    env = record.envelope
    keys = FakeKeys(key)
    opening = open_fields(env.event_id, env.sealed, env.payload, keys)
    assert opening.status is Status.OPENED
    assert opening.payload["data"]["patient_details"] == body["data"]["patient_details"]
    assert opening.payload["data"]["notes"] == "Jane rang"
    assert opening.subjects == (key.subject,)
    keys.destroy(key)
    gone = open_fields(env.event_id, env.sealed, env.payload, keys)
    assert gone.status is Status.FORGOTTEN
    assert gone.payload["data"]["patient_details"] is None
    assert gone.payload["data"]["notes"] is None
    assert "pk1:" not in str(gone.payload)


def test_a_field_that_does_not_open_is_damaged_not_forgotten():
    record, key, _ = sealed_record()
    env = record.envelope
    moved = open_fields("visit.completed:gfe_other:1", env.sealed, env.payload, FakeKeys(key))
    assert (moved.status, moved.reason) == (Status.DAMAGED, "sealed field does not open")
    keys = FakeKeys(key)
    keys.broken.add((key.subject, key.key_id))
    assert open_fields(env.event_id, env.sealed, env.payload, keys).status is Status.DAMAGED
    plain = {**env.payload, "data": {**env.payload["data"], "notes": "not sealed"}}
    assert open_fields(env.event_id, env.sealed, plain, FakeKeys(key)).status is Status.DAMAGED
    unknown = open_fields(env.event_id, env.sealed, env.payload, FakeKeys())
    assert unknown.status is Status.UNKNOWN
    assert unknown.unknown == ((key.subject, key.key_id),)


async def test_a_key_minted_after_the_last_refresh_is_found_by_refreshing_on_the_miss():
    record, key, _ = sealed_record()
    keys = FakeKeys()
    keys.arriving.append(key)
    verdict = await reader(keys).open(record.envelope)
    assert verdict.opening.status is Status.OPENED
    assert keys.refreshes == 1


async def test_an_unknown_key_is_retried_then_dead_lettered_past_the_grace():
    record, _, _ = sealed_record()
    keys, clock = FakeKeys(), Clock()
    opener = reader(keys, clock)
    with pytest.raises(RetryableError):
        await open_batch(opener, [record])
    clock.now += 59
    with pytest.raises(RetryableError):
        await open_batch(opener, [record])
    clock.now += 1
    with pytest.raises(InvalidBatch, match="unknown"):
        await open_batch(opener, [record])
    assert keys.refreshes == 3  # every attempt looked again before concluding


async def test_damaged_and_unopenable_envelopes_are_invalid_and_plaintext_passes_as_it_came():
    record, key, body = sealed_record()
    no_master = SealedReader(KafkaSettings(bootstrap_servers=["127.0.0.1:1"]), None)
    with pytest.raises(InvalidBatch, match=NO_MASTER):
        await open_batch(no_master, [record])
    plain = Record(
        record.envelope.model_copy(update={"sealed": (), "payload": body}), record.source
    )
    opened = await open_batch(no_master, [plain])
    assert opened.records == [plain]
    keys = FakeKeys(key)
    keys.broken.add((key.subject, key.key_id))
    with pytest.raises(InvalidBatch, match="unwrap"):
        await open_batch(reader(keys), [record])


async def test_a_forgotten_visit_is_stored_redacted_like_an_erasure_marker_hit():
    record, key, _ = sealed_record()
    keys = FakeKeys(key)
    keys.destroy(key)
    opened = await open_batch(reader(keys), [record])
    assert opened.forgotten == {0}
    assert opened.records[0].source is record.source  # dead letters keep the sealed bytes
    rows = batch_rows([forgotten_visit(opened.records[0])])
    now = datetime.now(UTC)
    stored = protect(
        rows,
        Protection(
            KEYRING, now, frozenset({KEYRING.gfe_marker("gfe_abc123xyz789")}), extra_paths=NOTES
        ),
    )
    (event,) = stored.events
    (row,) = stored.visits
    assert event[9] == now
    assert row[-1] == now
    assert row[4:8] == (None, None, None, None)
    assert "Jane" not in event[7]
    assert "pk1:" not in event[7]


async def test_the_email_stage_skips_a_forgotten_visit_without_asking_postgres():
    record, key, _ = sealed_record()
    keys = FakeKeys(key)
    inner, down = FakeSink(), FakeMarkers(set(), fail=True)  # Postgres is down
    sink = SkipForgotten(inner, down, reader(keys))
    with pytest.raises(RetryableError):
        await sink.write([record])  # a live key: it must ask Postgres, which cannot say
    keys.destroy(key)
    await sink.write([record])
    assert (inner.written, sink.skipped) == ([], 1)


async def test_the_email_stage_renders_from_the_opened_visit():
    record, key, body = sealed_record()
    inner = FakeSink()
    sink = SkipForgotten(inner, FakeMarkers(set()), reader(FakeKeys(key)))
    await sink.write([record])
    (sent,) = inner.written
    assert sent.envelope.payload["data"]["patient_details"] == body["data"]["patient_details"]
    assert sent.envelope.sealed == ()


def settings(**values: object) -> PhiSettings:
    return PhiSettings(index_key=INDEX, **values)  # type: ignore[arg-type]


def test_the_master_key_is_required_when_sealing_is_on_and_optional_when_off():
    kafka = KafkaSettings(bootstrap_servers=["127.0.0.1:1"])
    with pytest.raises(ConfigError, match="PHI_KAFKA_MASTER_KEYS is required"):
        stage_reader(kafka, settings(kafka_seal=True))
    with pytest.raises(ConfigError, match="PHI_KAFKA_MASTER_KEYS"):
        stage_reader(kafka, settings(kafka_seal=False, kafka_master_keys="m1:not-a-key"))
    assert stage_reader(kafka, settings(kafka_seal=False)).master is None
    assert stage_reader(kafka, settings(kafka_master_keys=new_key_entry("m1"))).master is not None


class WrongMaster(FakeKeys):
    def verify_master(self) -> None:
        raise PhiDecryptError("does not open")


async def test_a_wrong_master_key_is_a_config_error_once_the_key_topic_is_read():
    with pytest.raises(ConfigError, match="does not open the key topic"):
        await reader(WrongMaster()).refresh()


def test_check_config_refuses_a_sealing_stage_without_the_master_key(monkeypatch, tmp_path):
    from cli.check_config import check_config
    from devstack.phi_keys import new_phi_env

    for name, value in new_phi_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("STREAMS_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("PHI_KAFKA_SEAL", "true")
    monkeypatch.delenv("PHI_KAFKA_MASTER_KEYS", raising=False)
    for stage in ("postgres", "email"):
        with pytest.raises(ConfigError, match="PHI_KAFKA_MASTER_KEYS is required"):
            check_config(stage)
    monkeypatch.setenv("PHI_KAFKA_MASTER_KEYS", new_key_entry("m1"))
    assert "postgres: settings valid" in check_config("postgres")[0]


class Unreachable(FakeKeys):
    async def refresh(self) -> None:
        from aiokafka.errors import KafkaConnectionError

        raise KafkaConnectionError("no broker")


async def test_a_key_topic_kafka_cannot_serve_makes_the_batch_wait_not_fail():
    record, _, _ = sealed_record()
    with pytest.raises(RetryableError, match="key topic unreadable"):
        await open_batch(reader(Unreachable()), [record])
