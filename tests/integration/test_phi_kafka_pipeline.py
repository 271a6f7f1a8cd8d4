"""Crypto-shredding through the running pipeline (issue 28's "done when"): sealed visits are
written sealed to Postgres and emailed, open on every topic they reached with the client
helper, and after `phi forget` open on none; a re-delivery writes and emails nothing; the
other patient is untouched (docs/patient-data-on-kafka.md).

The first test posts everything to the running ingress (``PHI_KAFKA_SEAL=on``) and reads
every topic of the module back. The others seal and publish to the raw topic here, as the
ingress does (a key stored before the event that uses it), to craft what the ingress never
sends: a damaged envelope, a visit sealed with a key already destroyed.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from playwright.async_api import Browser, expect

from devstack.process import free_port
from devstack.stack import pipeline_process, stage_argv
from events.envelope import encode_envelope
from events.registry import VISIT_COMPLETED
from events.samples import sample_visit
from events.topics import headers
from sinks.postgres.protect import open_payload, open_visit
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.phi.crypto import keyring_from, new_key_entry
from spakinect_pipeline.phi.kafka_client import SealedFields
from spakinect_pipeline.phi.kafka_keys import DataKey, seal_payload, subject_of
from spakinect_pipeline.phi.key_janitor import sweep_epoch_keys
from spakinect_pipeline.phi.key_store import KeyStore, destroy, ensure_key_topic, read_records
from spakinect_pipeline.phi.paths import parse_paths
from spakinect_pipeline.phi.settings import PhiSettings
from spakinect_pipeline.phi.unparsed import HOUR, Unreadable, epoch_subject, open_body
from tests.helpers import read_topic, wait_until

from .conftest import Pipeline
from .console_fixtures import Console, logged_in
from .test_ingress_sealing import whole
from .test_phi_pipeline import cli, run_cli
from .test_pipeline import mails_for, metric

pytestmark = pytest.mark.integration

MASTER_ENTRY = new_key_entry("m1")
PIPELINE_ENV = {
    "PHI_KAFKA_SEAL": "true",
    "PHI_KAFKA_MASTER_KEYS": MASTER_ENTRY,
    "PHI_EXTRA_PATHS": "data.notes",
}
NOTES = parse_paths("data.notes")


def patient(first: str, last: str) -> dict[str, str]:
    tag = uuid.uuid4().hex[:6]
    return {
        "name": f"{first} {last}{tag}",
        "first_name": first,
        "last_name": f"{last}{tag}",
        "email": f"{first.lower()}.{tag}@example.com",
    }


class Ingress:
    """What the sealing ingress publishes: a key stored first, then the sealed envelope."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.kafka = kafka_of(pipeline)
        self.master = keyring_from(MASTER_ENTRY, pipeline.env["PHI_INDEX_KEY"])
        self.store = KeyStore(self.kafka, self.master)
        self.producer = AIOKafkaProducer(
            bootstrap_servers=pipeline.services.kafka_bootstrap, acks="all"
        )

    async def __aenter__(self) -> Ingress:
        await self.producer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.producer.stop()

    def body(self, who: dict[str, str], gfe_id: str | None = None, ts: int = 1714675200000):
        return visit_of(who, gfe_id, ts)

    def seal(self, body: dict[str, Any], key: DataKey) -> tuple[str, bytes]:
        event_id = f"visit.completed:{body['data']['gfe_id']}:{body['timestamp']}"
        payload, sealed = seal_payload(event_id, body, key, NOTES)
        value = encode_envelope(
            event_id=event_id,
            event=VISIT_COMPLETED,
            received_at=datetime.now(UTC),
            payload=payload,
            sealed=sealed,
        )
        return event_id, value

    async def key(self, body: dict[str, Any]) -> DataKey:
        return await self.store.key_for(self.producer, subject_of(body, self.master.index) or "")

    async def publish(self, body: dict[str, Any], value: bytes, event_id: str) -> None:
        await self.producer.send_and_wait(
            self.pipeline.topics.raw(VISIT_COMPLETED),
            value,
            key=str(body["data"]["gfe_id"]).encode(),
            headers=headers(event=VISIT_COMPLETED, event_id=event_id),
        )

    async def post(self, body: dict[str, Any], key: DataKey | None = None) -> tuple[str, bytes]:
        event_id, value = self.seal(body, key or await self.key(body))
        await self.publish(body, value, event_id)
        return event_id, value


def visit_of(
    who: dict[str, str], gfe_id: str | None = None, ts: int = 1714675200000
) -> dict[str, Any]:
    """A vendor's visit of ``who``, its notes naming them too (a ``PHI_EXTRA_PATHS`` field)."""
    gfe_id = gfe_id or f"gfe_k{uuid.uuid4().hex[:8]}"
    return sample_visit(gfe_id, ts, patient_details=who, notes=f"{who['name']} rang")


def kafka_of(pipeline: Pipeline) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=[pipeline.services.kafka_bootstrap],
        topic_prefix=pipeline.env["KAFKA_TOPIC_PREFIX"],
    )


async def opened_messages(
    pipeline: Pipeline, topic: str, helper: SealedFields, gfe_ids: set[str]
) -> dict[str, list[dict[str, Any]]]:
    """The topic's messages of these visits, opened by the helper, by gfe_id."""
    messages = await read_topic(pipeline.services.kafka_bootstrap, topic)
    return opened_visits(topic, messages, helper, gfe_ids)


def opened_visits(
    topic: str, messages: Sequence[Any], helper: SealedFields, gfe_ids: set[str]
) -> dict[str, list[dict[str, Any]]]:
    """The visit envelopes among ``messages`` of these gfe ids, opened, by gfe_id."""
    found: dict[str, list[dict[str, Any]]] = {g: [] for g in gfe_ids}
    for message in messages:
        envelope = orjson.loads(message.value)
        gfe_id = envelope["payload"].get("data", {}).get("gfe_id")
        if gfe_id in gfe_ids:
            assert envelope["envelope_version"] == 2, topic  # carried sealed, as it came
            found[gfe_id].append(helper.open(envelope))
    return found


async def postgres_text(pipeline: Pipeline) -> str:
    """Every row of every table as text (what a pg_dump would hold)."""
    tables = await pipeline.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    texts = []
    for table in tables:
        rows = await pipeline.fetch(f'SELECT t::text AS t FROM "{table[0]}" t')
        texts += [r["t"] for r in rows]
    return "\n".join(texts)


async def opened_postgres_text(pipeline: Pipeline) -> str:
    """Every visit row and event payload opened with PHI_ENCRYPTION_KEYS (what a leak of the
    database and its keys would show)."""
    keyring = pipeline.keyring
    visits = await pipeline.fetch("SELECT * FROM gfe_visits")
    events = await pipeline.fetch("SELECT event_id, payload FROM spakinect_events")
    return orjson.dumps(
        [open_visit(r, keyring) for r in visits]
        + [open_payload(e["event_id"], e["payload"], keyring, NOTES) for e in events]
    ).decode()


async def email_metric(pipeline: Pipeline, outcome: str) -> float:
    return metric(await pipeline.metrics("email"), "streams_events_total", stage="email",
                  outcome=outcome)  # fmt: skip


async def every_message(pipeline: Pipeline) -> dict[str, list[Any]]:
    """Every message of every topic of this module (its prefix's topics, the key topic, the
    stages' changelogs), by topic: what a broker's disks and its subscribers hold."""
    admin = AIOKafkaAdminClient(bootstrap_servers=pipeline.services.kafka_bootstrap)
    await admin.start()
    try:
        names = await admin.list_topics()
    finally:
        await admin.close()
    own = (pipeline.env["KAFKA_TOPIC_PREFIX"], pipeline.env["STREAMS_APP_ID"] + "-")
    topics = sorted(t for t in names if t.startswith(own))
    read = [read_topic(pipeline.services.kafka_bootstrap, t) for t in topics]
    return dict(zip(topics, await asyncio.gather(*read), strict=True))


def opened_bodies(messages: Sequence[Any], helper: SealedFields) -> list[bytes]:
    """The rejected topic's refused bodies, opened as `rejected replay` does (unreadable
    ones left out)."""
    bodies = []
    for message in messages:
        try:
            bodies.append(open_body(message.value, list(message.headers), helper.keys.get))
        except Unreadable:
            continue
    return bodies


async def fresh_helper(pipeline: Pipeline) -> SealedFields:
    """A subscriber's helper that starts now (reads the key topic as it is now)."""
    helper = SealedFields(
        kafka_of(pipeline), keyring_from(MASTER_ENTRY, pipeline.env["PHI_INDEX_KEY"])
    )
    await helper.refresh()
    return helper


async def all_consumed(pipeline: Pipeline) -> None:
    """Every stage has committed past what is on its topics now: what was posted went through
    (or was dropped) without any later traffic, and nothing of it is still in flight."""
    await pipeline.consumed("dedupe", pipeline.topics.raw(VISIT_COMPLETED))
    for sink in ("postgres", "email"):
        await pipeline.consumed(sink, pipeline.topics.visits)


async def test_through_the_ingress_a_forget_leaves_nothing_of_one_patient_that_opens(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    """Issue 28's "done when", end to end: posted to the running sealing ingress, through
    dedupe, Postgres and email, every topic read back; then `phi forget` for one patient."""
    jane, olive = patient("Ursula", "Forgotten"), patient("Violet", "Remembered")
    jane_visit, olive_visit = visit_of(jane), visit_of(olive)
    for body in (jane_visit, olive_visit):
        assert (await pipeline.post(body)).status_code == 200
    jane_gfe, olive_gfe = str(jane_visit["data"]["gfe_id"]), str(olive_visit["data"]["gfe_id"])
    refused_gfe = f"gfe_r{uuid.uuid4().hex[:8]}"  # Jane's visit sent to the wrong URL: refused
    refused = await pipeline.post(visit_of(jane, refused_gfe), "/webhooks/treatment-updated")
    assert refused.status_code == 400
    assert jane["last_name"] not in refused.text
    unknown = {
        "event": "visit.cancelled",
        "patient": {"name": jane["name"], "email": jane["email"]},
    }
    unrouted = await pipeline.post(unknown, "/webhooks")
    assert unrouted.status_code == 200
    assert unrouted.json()["routed"] is False
    unrouted_id = unrouted.json()["event_id"]

    for gfe_id, who in ((jane_gfe, jane), (olive_gfe, olive)):
        (row,) = await pipeline.wait_rows("SELECT * FROM gfe_visits WHERE gfe_id = $1", gfe_id)
        assert open_visit(row, pipeline.keyring)["patient_email"] == who["email"]
        await wait_until(lambda g=gfe_id: asyncio.sleep(0, mails_for(pipeline, g)), 30, "email")
    await all_consumed(pipeline)

    secrets = [who[k] for who in (jane, olive) for k in ("name", "last_name", "email")]
    topics = pipeline.topics
    on_kafka = await every_message(pipeline)
    for topic in (topics.raw(VISIT_COMPLETED), topics.visits, topics.rejected, topics.unrouted):
        assert on_kafka[topic], topic
    for topic, messages in on_kafka.items():
        for message in messages:
            for secret in secrets:
                assert secret.encode() not in whole(message), topic  # sealed on every topic

    helper = await fresh_helper(pipeline)
    envelope_topics = [t for t in topics.all() if t not in (topics.rejected, topics.unrouted)]
    for topic in envelope_topics:  # raw, clean, and any retry or DLQ copy
        found = opened_visits(topic, on_kafka[topic], helper, {jane_gfe, olive_gfe})
        if topic in (topics.raw(VISIT_COMPLETED), topics.visits):
            assert found[jane_gfe], topic
            assert found[olive_gfe], topic
        for gfe_id, who in ((jane_gfe, jane), (olive_gfe, olive)):
            for message in found[gfe_id]:
                assert message["forgotten"] is False, topic
                assert message["payload"]["data"]["patient_details"] == who, topic
                assert message["payload"]["data"]["notes"] == f"{who['name']} rang", topic
    (kept,) = [
        b for b in opened_bodies(on_kafka[topics.rejected], helper) if refused_gfe.encode() in b
    ]
    assert jane["email"].encode() in kept
    (unrouted_envelope,) = [
        orjson.loads(m.value)
        for m in on_kafka[topics.unrouted]
        if orjson.loads(m.value)["event_id"] == unrouted_id
    ]
    assert helper.open(unrouted_envelope)["payload"]["sealed"] == unknown

    mails_before = len(mails_for(pipeline, jane_gfe))
    done = await cli(
        pipeline,
        "phi",
        "forget",
        "--patient-email",
        "-",
        "--reason",
        "issue 28",
        stdin=f"{jane['email']}\n".encode(),
    )
    assert re.search(r"kafka keys destroyed: [1-9]", done), done
    assert "PHI_UNPARSED_KEY_TTL" in done  # what a forget cannot reach: said, with its bound

    after = await fresh_helper(pipeline)  # a consumer that starts after the forget
    on_kafka = await every_message(pipeline)
    for topic in envelope_topics:
        found = opened_visits(topic, on_kafka[topic], after, {jane_gfe, olive_gfe})
        if topic in (topics.raw(VISIT_COMPLETED), topics.visits):
            assert found[jane_gfe], topic
            assert found[olive_gfe], topic
        for message in found[jane_gfe]:
            assert message["forgotten"] is True, topic
            for secret in (jane["email"], jane["last_name"]):
                assert secret not in orjson.dumps(message).decode(), topic
        for message in found[olive_gfe]:
            assert message["payload"]["data"]["patient_details"] == olive, topic
    # The refused and unrouted bodies name no patient the pipeline can key by: their epoch key
    # outlives the forget until PHI_UNPARSED_KEY_TTL has passed since their hour (the janitor).
    assert [b for b in opened_bodies(on_kafka[topics.rejected], after) if refused_gfe.encode() in b]
    assert after.open(unrouted_envelope)["forgotten"] is False
    ttl = PhiSettings.model_fields["unparsed_key_ttl"].default
    assert "PHI_UNPARSED_KEY_TTL" not in pipeline.env  # the default, as the ingress has it
    later = datetime.now(UTC) + timedelta(seconds=ttl) + HOUR
    assert await sweep_epoch_keys(kafka_of(pipeline), ttl, later)
    expired = await fresh_helper(pipeline)
    rejected = await read_topic(pipeline.services.kafka_bootstrap, topics.rejected)
    assert not [b for b in opened_bodies(rejected, expired) if refused_gfe.encode() in b]
    opened = expired.open(unrouted_envelope)
    assert opened["forgotten"] is True
    assert opened["payload"]["sealed"] is None

    for text in (await postgres_text(pipeline), await opened_postgres_text(pipeline)):
        for secret in (jane["email"], jane["last_name"]):
            assert secret not in text
    assert olive["email"] in await opened_postgres_text(pipeline)
    email_file = tmp_path / "email"
    email_file.write_text(jane["email"] + "\n")
    verified = await cli(
        pipeline, "phi", "verify-forgotten", "--patient-email-file", str(email_file)
    )
    assert "no live key left" in verified

    # Re-delivery: the vendor sends the same visit again, and a newer one of the same visit.
    late = dict(jane_visit, timestamp=int(jane_visit["timestamp"]) + 60_000)
    for body in (jane_visit, late):
        assert (await pipeline.post(body)).status_code == 200
    await all_consumed(pipeline)  # both went through, with no later traffic to push them
    (row,) = await pipeline.fetch("SELECT * FROM gfe_visits WHERE gfe_id = $1", jane_gfe)
    assert row["event_id"] == f"{VISIT_COMPLETED}:{jane_gfe}:{late['timestamp']}"  # applied ...
    assert row["phi_redacted_at"] is not None  # ... redacted: nothing written back
    assert open_visit(row, pipeline.keyring)["patient_email"] is None
    assert len(mails_for(pipeline, jane_gfe)) == mails_before  # and no email
    for text in (await postgres_text(pipeline), await opened_postgres_text(pipeline)):
        for secret in (jane["email"], jane["last_name"]):
            assert secret not in text

    (olive_row,) = await pipeline.fetch("SELECT * FROM gfe_visits WHERE gfe_id = $1", olive_gfe)
    assert open_visit(olive_row, pipeline.keyring)["patient_name"] == olive["name"]
    assert len(mails_for(pipeline, olive_gfe)) == 1
    logged = "".join(p.read_text(errors="replace") for p in pipeline.logs.glob("*.log"))
    for secret in secrets:
        assert secret not in logged + done + verified
    assert MASTER_ENTRY.split(":", 1)[1] not in logged + done + verified


async def test_phi_sweep_destroys_the_expired_epoch_keys_with_no_phi_retention_set(
    pipeline: Pipeline,
) -> None:
    """`phi sweep` runs the key janitor once, audited; PHI_RETENTION unset is no longer
    "nothing to sweep" while sealing is on. On a key topic of its own (the ingress's hourly
    janitor watches the module's one)."""
    own = kafka_of(pipeline).model_copy(update={"topic_prefix": f"s{uuid.uuid4().hex[:8]}."})
    await ensure_key_topic(own)
    store = KeyStore(own, keyring_from(MASTER_ENTRY, pipeline.env["PHI_INDEX_KEY"]))
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.services.kafka_bootstrap, acks="all")
    await producer.start()
    now = datetime.now(UTC)
    try:  # an epoch key nine days old (past the 7-day default) and one of this hour
        old = await store.key_for(producer, epoch_subject(now - timedelta(days=9)))
        current = await store.key_for(producer, epoch_subject(now))
    finally:
        await producer.stop()
    env = {**pipeline.env, "KAFKA_TOPIC_PREFIX": own.topic_prefix}
    assert "PHI_RETENTION" not in env

    swept = await cli(pipeline, "phi", "sweep", env=env)
    assert "epoch keys destroyed: 1 " in swept
    assert "PHI_UNPARSED_KEY_TTL (168 h)" in swept
    assert "redacted:" not in swept  # no Postgres retention asked for
    records, _ = await read_records(own)
    assert records[old.record_key] is None  # tombstoned
    assert records[current.record_key] is not None  # its hour is not over yet
    again = await cli(pipeline, "phi", "sweep", env={**env, "PHI_RETENTION": "30d"})
    assert "epoch keys destroyed: 0 " in again  # idempotent
    assert "redacted: " in again  # both halves when both are asked for
    audited = await cli(pipeline, "audit", "list", "--action", "phi.sweep-epoch-keys")
    assert audited.count(f"{own.topic_prefix}phi-keys") == 2
    off = {**env, "PHI_KAFKA_SEAL": "false"}
    code, output = await run_cli(pipeline, "phi", "sweep", env=off)
    assert code == 2, output
    assert "nothing to sweep" in output


async def test_a_forget_shreds_one_patient_on_every_topic_and_in_postgres(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    async with Ingress(pipeline) as ingress:
        await shred_one_of_two(pipeline, ingress, tmp_path)


async def shred_one_of_two(pipeline: Pipeline, ingress: Ingress, tmp_path: Path) -> None:
    jane, olive = patient("Zinnia", "Shredded"), patient("Olive", "Kept")
    jane_visit, olive_visit = ingress.body(jane), ingress.body(olive)
    jane_id, jane_raw = await ingress.post(jane_visit)
    await ingress.post(olive_visit)
    # A damaged one: Jane's second visit, its notes moved in from another event.
    damaged = ingress.body(jane, ts=1714675260000)
    jane_key = await ingress.key(damaged)  # the same key: one per patient per ingress
    damaged_id, value = ingress.seal(damaged, jane_key)
    _, donor = ingress.seal({**damaged, "timestamp": 1}, jane_key)
    envelope = orjson.loads(value)
    envelope["payload"]["data"]["notes"] = orjson.loads(donor)["payload"]["data"]["notes"]
    await ingress.publish(damaged, orjson.dumps(envelope), damaged_id)
    jane_gfe, olive_gfe, damaged_gfe = (
        str(v["data"]["gfe_id"]) for v in (jane_visit, olive_visit, damaged)
    )
    gfe = {jane_gfe, olive_gfe, damaged_gfe}

    rows = {}
    for gfe_id in (jane_gfe, olive_gfe):
        (row,) = await pipeline.wait_rows("SELECT * FROM gfe_visits WHERE gfe_id = $1", gfe_id)
        rows[gfe_id] = open_visit(row, pipeline.keyring)
    assert rows[jane_gfe]["patient_email"] == jane["email"]
    assert rows[olive_gfe]["patient_name"] == olive["name"]
    (event,) = await pipeline.fetch(
        "SELECT payload FROM spakinect_events WHERE event_id = $1", jane_id
    )
    opened = open_payload(jane_id, event["payload"], pipeline.keyring, NOTES)
    assert opened["data"]["notes"] == f"{jane['name']} rang"
    dump = await postgres_text(pipeline)
    for who in (jane, olive):
        assert who["email"] not in dump
        assert who["last_name"] not in dump  # sealed with PHI_ENCRYPTION_KEYS, as before
        assert "pk1:" not in dump  # opened from Kafka, never stored sealed for Kafka
    for gfe_id in (jane_gfe, olive_gfe):
        await wait_until(lambda g=gfe_id: asyncio.sleep(0, mails_for(pipeline, g)), 30, "email")

    topics = pipeline.topics
    where = [topics.raw(VISIT_COMPLETED), topics.clean(VISIT_COMPLETED), topics.dlq]

    async def dead_lettered() -> bool:
        dlq = await read_topic(pipeline.services.kafka_bootstrap, topics.dlq)
        return len([m for m in dlq if dict(m.headers).get("event_id") == damaged_id.encode()]) >= 2

    await wait_until(dead_lettered, 60, "the damaged visit in the DLQ (postgres and email)")
    assert not await pipeline.fetch("SELECT 1 FROM gfe_visits WHERE gfe_id = $1", damaged_gfe)
    assert not mails_for(pipeline, damaged_gfe)

    kafka = kafka_of(pipeline)
    master = keyring_from(MASTER_ENTRY, pipeline.env["PHI_INDEX_KEY"])
    helper = SealedFields(kafka, master)
    await helper.refresh()
    for topic in where:
        found = await opened_messages(pipeline, topic, helper, gfe)
        if topic != topics.dlq:
            for gfe_id, who in ((jane_gfe, jane), (olive_gfe, olive)):
                assert found[gfe_id], (topic, gfe_id)
                for message in found[gfe_id]:
                    assert message["payload"]["data"]["patient_details"] == who
        (letter, *_) = found[damaged_gfe]
        assert letter["payload"]["data"]["patient_details"] == jane  # the DLQ keeps it sealed

    email_file = tmp_path / "email"
    email_file.write_text(jane["email"] + "\n")
    by_email = ("--patient-email-file", str(email_file))
    code, before = await run_cli(pipeline, "phi", "verify-forgotten", *by_email)
    assert code == 1, before
    assert "1 live key record(s)" in before
    assert "cleanup.policy=compact" in before

    done = await cli(pipeline, "phi", "forget", *by_email, "--reason", "issue 28")
    assert "kafka keys destroyed: 1" in done
    assert "PHI_UNPARSED_KEY_TTL" in done
    assert jane["email"] not in done
    after = await cli(pipeline, "phi", "verify-forgotten", *by_email)
    assert "0 live key record(s)" in after
    assert "no live key left" in after
    again = await cli(pipeline, "phi", "forget", *by_email)
    assert "kafka keys destroyed: 0" in again  # idempotent

    fresh = SealedFields(kafka, master)  # a consumer that starts after the forget
    await fresh.refresh()
    for topic in where:
        found = await opened_messages(pipeline, topic, fresh, gfe)
        for message in found[jane_gfe] + found[damaged_gfe]:
            assert message["forgotten"] is True, topic
            text = orjson.dumps(message).decode()
            assert jane["email"] not in text
            assert jane["last_name"] not in text
        for message in found[olive_gfe]:
            assert message["payload"]["data"]["patient_details"] == olive, topic
    jane_row = (await pipeline.fetch("SELECT * FROM gfe_visits WHERE gfe_id = $1", jane_gfe))[0]
    assert open_visit(jane_row, pipeline.keyring)["patient_email"] is None
    olive_row = (await pipeline.fetch("SELECT * FROM gfe_visits WHERE gfe_id = $1", olive_gfe))[0]
    assert open_visit(olive_row, pipeline.keyring)["patient_name"] == olive["name"]

    # Re-delivery: the same raw message again, and a newer visit sealed with the destroyed
    # key (an ingress that had not seen the tombstone yet): nothing written back, no email.
    written_before = metric(
        await pipeline.metrics("postgres"), "streams_events_total", stage="postgres",
        outcome="written",
    )  # fmt: skip
    forgotten_before = await email_metric(pipeline, "forgotten")
    mails_before = len(mails_for(pipeline, jane_gfe))
    late = dict(jane_visit, timestamp=1714675320000)
    await ingress.publish(jane_visit, jane_raw, jane_id)
    late_id, _ = await ingress.post(late, jane_key)

    async def late_written() -> bool:
        text = await pipeline.metrics("postgres")
        written = metric(text, "streams_events_total", stage="postgres", outcome="written")
        return written > written_before

    await wait_until(late_written, 60, "the postgres stage to take the late visit")
    await wait_until(
        lambda: _more(email_metric(pipeline, "forgotten"), forgotten_before), 60, "email skip"
    )
    await asyncio.sleep(3)  # and then silence: nothing later gets it through
    assert len(mails_for(pipeline, jane_gfe)) == mails_before
    (row,) = await pipeline.fetch("SELECT * FROM gfe_visits WHERE gfe_id = $1", jane_gfe)
    assert row["event_id"] == late_id  # the newer visit applied ...
    assert row["phi_redacted_at"] is not None  # ... redacted, like an erasure-marker hit
    assert open_visit(row, pipeline.keyring)["patient_email"] is None

    # The damaged visit's dead letters replayed after the forget: forgotten (its key is
    # gone) before damaged, so stored redacted and not emailed, not dead-lettered again.
    forgotten_before = await email_metric(pipeline, "forgotten")
    replayed = await cli(pipeline, "dlq", "replay", "--event-id", damaged_id)
    assert "replayed 2 of 2" in replayed
    (row,) = await pipeline.wait_rows(
        "SELECT * FROM gfe_visits WHERE gfe_id = $1", damaged_gfe, timeout=60
    )
    assert row["phi_redacted_at"] is not None
    await wait_until(
        lambda: _more(email_metric(pipeline, "forgotten"), forgotten_before), 60, "email skip"
    )
    await asyncio.sleep(3)
    assert not mails_for(pipeline, damaged_gfe)
    for sink in ("postgres", "email"):  # the replay went through the retry topics, sealed
        retried = await opened_messages(pipeline, topics.retry(sink), fresh, {damaged_gfe})
        assert retried[damaged_gfe], sink
        assert all(m["forgotten"] is True for m in retried[damaged_gfe])
    dump = await postgres_text(pipeline)
    assert jane["email"] not in dump
    assert jane["last_name"] not in dump
    assert olive["last_name"] not in dump
    opened_dump = await opened_postgres_text(pipeline)
    assert jane["email"] not in opened_dump
    assert jane["last_name"] not in opened_dump
    assert olive["email"] in opened_dump  # the other patient is still there, opened
    logged = "".join(p.read_text(errors="replace") for p in pipeline.logs.glob("*.log"))
    outputs = before + done + after + again + replayed
    for secret in (jane["email"], jane["last_name"], olive["email"], olive["last_name"]):
        assert secret not in logged
        assert secret not in outputs
    assert MASTER_ENTRY.split(":", 1)[1] not in logged + outputs


async def _more(value: Any, than: float) -> bool:
    return bool(await value > than)


async def test_the_email_stage_skips_a_forgotten_patient_while_postgres_is_down(
    pipeline: Pipeline,
) -> None:
    who = patient("Quentin", "Downtime")
    kafka = kafka_of(pipeline)
    forgotten_before = await email_metric(pipeline, "forgotten")
    async with Ingress(pipeline) as ingress:
        body = ingress.body(who)
        key = await ingress.key(body)
        await destroy(kafka, [key.subject])  # forgotten before its visit reaches the stages
        await pipeline.pg_proxy.down()
        try:
            await ingress.post(body, key)
            await wait_until(
                lambda: _more(email_metric(pipeline, "forgotten"), forgotten_before),
                60,
                "the email stage to skip the visit without Postgres",
            )
            assert not mails_for(pipeline, str(body["data"]["gfe_id"]))
        finally:
            await pipeline.pg_proxy.up()
    (row,) = await pipeline.wait_rows(
        "SELECT * FROM gfe_visits WHERE gfe_id = $1", str(body["data"]["gfe_id"])
    )
    assert row["phi_redacted_at"] is not None  # Postgres back: written redacted, never plain
    await asyncio.sleep(2)
    assert not mails_for(pipeline, str(body["data"]["gfe_id"]))


async def test_a_forget_with_kafka_down_fails_loudly_and_a_rerun_completes(
    pipeline: Pipeline,
) -> None:
    who = patient("Wanda", "Unreachable")
    async with Ingress(pipeline) as ingress:
        body = ingress.body(who)
        await ingress.post(body)
    gfe_id = str(body["data"]["gfe_id"])
    await pipeline.wait_rows("SELECT 1 FROM gfe_visits WHERE gfe_id = $1", gfe_id)
    by_email = ("--patient-email-file", _file(who["email"]))
    down = {**pipeline.env, "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{free_port()}"}
    code, output = await run_cli(pipeline, "phi", "forget", *by_email, env=down)
    assert code == 1, output
    assert "redacted: 1 gfe_visits row(s)" in output
    assert "NOT destroyed" in output
    assert "Run the same `phi forget` again" in output
    code, live = await run_cli(pipeline, "phi", "verify-forgotten", *by_email)
    assert code == 1, live  # the key is still there: the forget did not complete
    assert "1 live key record(s)" in live
    done = await cli(pipeline, "phi", "forget", *by_email)
    assert "redacted: 0 gfe_visits row(s)" in done  # Postgres was done the first time
    assert "kafka keys destroyed: 1" in done
    assert "0 live key record(s)" in await cli(pipeline, "phi", "verify-forgotten", *by_email)


def _file(text: str) -> str:
    path = Path(f"/tmp/verify-{uuid.uuid4().hex}")
    path.write_text(text + "\n")
    return str(path)


async def test_a_stage_whose_master_key_opens_no_key_record_stops_and_says_why(
    pipeline: Pipeline,
) -> None:
    async with Ingress(pipeline) as ingress:  # at least one key record to check it against
        await ingress.key(ingress.body(patient("Mona", "Masterkey")))
    name = f"postgres-wrong-key-{uuid.uuid4().hex[:4]}"
    env = {
        **pipeline.env,
        "PHI_KAFKA_MASTER_KEYS": new_key_entry("m1"),  # the right id, the wrong key
        "STREAMS_APP_ID": f"{pipeline.env['STREAMS_APP_ID']}-wrong",  # its own group
        "STREAMS_STATE_DIR": str(Path(pipeline.env["STREAMS_STATE_DIR"]) / name),
        "STREAMS_WEB_PORT": str(free_port()),
    }
    process = pipeline_process(name, stage_argv("postgres"), env, pipeline.logs)
    process.start()
    try:
        await wait_until(lambda: asyncio.sleep(0, not process.alive()), 90, "the stage to stop")
    finally:
        await asyncio.to_thread(process.stop, 10)
    log = (pipeline.logs / f"{name}.log").read_text(errors="replace")
    assert "PHI_KAFKA_MASTER_KEYS does not open the key topic's keys" in log


async def test_the_console_opens_a_sealed_dead_letter_for_the_phi_role_only(
    pipeline: Pipeline, console: Console, browser: Browser
) -> None:
    who = patient("Dora", "Deadletter")
    async with Ingress(pipeline) as ingress:  # a visit whose notes do not open: dead-lettered
        body = ingress.body(who)
        key = await ingress.key(body)
        event_id, value = ingress.seal(body, key)
        _, donor = ingress.seal({**body, "timestamp": 1}, key)
        envelope = orjson.loads(value)
        envelope["payload"]["data"]["notes"] = orjson.loads(donor)["payload"]["data"]["notes"]
        await ingress.publish(body, orjson.dumps(envelope), event_id)

    async def letter() -> Any:
        dlq = await read_topic(pipeline.services.kafka_bootstrap, pipeline.topics.dlq)
        return next((m for m in dlq if dict(m.headers).get("event_id") == event_id.encode()), None)

    found = await wait_until(letter, 60, "the dead letter")
    url = f"{console.url}/dlq/{found.partition}/{found.offset}"
    viewer = await logged_in(browser, console.url, "viewer")
    await viewer.goto(url)
    await expect(viewer.locator("main")).to_contain_text("shown to the phi role only")
    assert await viewer.locator("pre").count() == 0
    phi = await logged_in(browser, console.url, "phi")
    await phi.goto(url)
    await expect(phi.locator("pre")).to_contain_text(who["email"])  # opened
    await destroy(kafka_of(pipeline), [key.subject])  # the patient is forgotten
    await phi.goto(url)
    shown = await phi.locator("pre").inner_text()
    assert '"patient_details": "forgotten"' in shown
    assert who["email"] not in shown
    assert who["last_name"] not in shown
