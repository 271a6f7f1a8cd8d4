"""Crypto-shredding through the running pipeline (issue 28's "done when"): sealed visits are
written sealed to Postgres and emailed, open on every topic they reached with the client
helper, and after `phi forget` open on none; a re-delivery writes and emails nothing; the
other patient is untouched (docs/patient-data-on-kafka.md).

The visits are sealed and published to the raw topic here, as the ingress does
(a key stored before the event that uses it), so these tests do not depend on
the ingress's side.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
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
from spakinect_pipeline.phi.key_store import KeyStore, destroy
from spakinect_pipeline.phi.paths import parse_paths
from tests.helpers import read_topic, wait_until

from .conftest import Pipeline
from .console_fixtures import Console, logged_in
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
        gfe_id = gfe_id or f"gfe_k{uuid.uuid4().hex[:8]}"
        return sample_visit(gfe_id, ts, patient_details=who, notes=f"{who['name']} rang")

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


def kafka_of(pipeline: Pipeline) -> KafkaSettings:
    return KafkaSettings(
        bootstrap_servers=[pipeline.services.kafka_bootstrap],
        topic_prefix=pipeline.env["KAFKA_TOPIC_PREFIX"],
    )


async def opened_messages(
    pipeline: Pipeline, topic: str, helper: SealedFields, gfe_ids: set[str]
) -> dict[str, list[dict[str, Any]]]:
    """The topic's messages of these visits, opened by the helper, by gfe_id."""
    found: dict[str, list[dict[str, Any]]] = {g: [] for g in gfe_ids}
    for message in await read_topic(pipeline.services.kafka_bootstrap, topic):
        envelope = orjson.loads(message.value)
        gfe_id = envelope["payload"]["data"]["gfe_id"]
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
