"""The patient-data lifecycle through the running pipeline (real Kafka, Postgres, SMTP):
sealed at rest, forgotten on request through the CLI, kept forgotten through a late
duplicate and a DLQ replay, audited, and never in a log line with the keys."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from typing import Any

import orjson
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient

from events.messages import SourceMessage, dlq_headers
from events.registry import VISIT_COMPLETED
from sinks.postgres.protect import open_visit
from spakinect_pipeline.phi.crypto import PhiDecryptError, keyring_from, new_key_entry
from tests.helpers import read_topic, wait_until

from .conftest import Pipeline
from .test_ingress_contract import CANARY_EMAIL, CANARY_NAME, canary_body
from .test_pipeline import mails_for, metric, visit

pytestmark = pytest.mark.integration
CANARIES = (CANARY_NAME, CANARY_EMAIL, "Zebulon", "Canarypatient")


async def run_cli(
    pipeline: Pipeline, *args: str, env: dict[str, str] | None = None, stdin: bytes = b""
) -> tuple[int, str]:
    """The real entry point (``python -m cli.main``); ``stdin`` is what it reads there."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        *args,
        env={**os.environ, **(env or pipeline.env)},
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate(stdin)
    return process.returncode or 0, output.decode()


async def cli(
    pipeline: Pipeline, *args: str, env: dict[str, str] | None = None, stdin: bytes = b""
) -> str:
    code, output = await run_cli(pipeline, *args, env=env, stdin=stdin)
    assert code == 0, output
    return output


async def email_changelogs(pipeline: Pipeline) -> list[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=pipeline.services.kafka_bootstrap)
    await admin.start()
    try:
        prefix = pipeline.group("email")
        return [t for t in await admin.list_topics() if t.startswith(prefix) and "changelog" in t]
    finally:
        await admin.close()


def dead_letter_of(message: Any, stage: str) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
    """The DLQ copy a sink would have made of a clean-topic message."""
    source = SourceMessage(
        message.topic,
        message.partition,
        message.offset,
        message.key,
        message.value,
        list(message.headers),
    )
    headers = dlq_headers(source, error="test", error_type="InvalidBatch", stage=stage, attempts=1)
    return message.key, message.value, headers


async def test_a_forgotten_patient_stays_forgotten_and_nothing_leaks(pipeline: Pipeline) -> None:
    outputs: list[str] = []
    kept_id = f"gfe_kept_{uuid.uuid4().hex[:6]}"  # another patient: untouched by the forget
    assert (await pipeline.post(visit(kept_id))).status_code == 200
    body = canary_body()
    gfe_id = str(body["data"]["gfe_id"])  # type: ignore[index]
    assert (await pipeline.post(body)).status_code == 200
    (row,) = await pipeline.wait_rows("SELECT * FROM gfe_visits WHERE gfe_id = $1", gfe_id)
    assert open_visit(row, pipeline.keyring)["patient_email"] == CANARY_EMAIL
    dump = await pipeline.fetch(
        "SELECT (SELECT string_agg(v::text, ' ') FROM gfe_visits v)"
        " || (SELECT string_agg(e::text, ' ') FROM spakinect_events e) AS text"
    )
    assert all(c not in dump[0]["text"] for c in CANARIES)  # not readable with plain SQL
    await wait_until(lambda: asyncio.sleep(0, mails_for(pipeline, gfe_id)), 30, "the email")

    outputs.append(
        dry := await cli(pipeline, "phi", "forget", "--patient-email", CANARY_EMAIL, "--dry-run")
    )
    assert f"visits found: {gfe_id}" in dry
    assert "would redact: 1 gfe_visits row(s), 1 event row(s)" in dry
    outputs.append(
        done := await cli(
            pipeline,
            "phi",
            "forget",
            "--patient-email",
            CANARY_EMAIL.upper(),
            "--reason",
            "patient asked",
        )
    )
    assert "redacted: 1 gfe_visits row(s), 1 event row(s)" in done
    assert f"kafka topic {pipeline.topics.raw(VISIT_COMPLETED)}: until " in done
    assert f"kafka topic {pipeline.topics.dlq}: until " in done
    (row,) = await pipeline.fetch("SELECT * FROM gfe_visits WHERE gfe_id = $1", gfe_id)
    assert row["patient_name"] is None
    assert row["phi_redacted_at"] is not None

    # The raw event again (dropped as a duplicate), a late newer duplicate of the visit
    # (applied, but redacted), and the DLQ copies of the clean event replayed to both sinks.
    email_before = await pipeline.metrics("email")
    assert (await pipeline.post(body)).status_code == 200
    late = canary_body(timestamp=int(body["timestamp"]) + 60_000)  # type: ignore[call-overload]
    late["data"]["gfe_id"] = gfe_id  # type: ignore[index]
    assert (await pipeline.post(late)).status_code == 200
    late_id = f"visit.completed:{gfe_id}:{late['timestamp']}"
    await pipeline.wait_rows("SELECT 1 FROM spakinect_events WHERE event_id = $1", late_id)
    clean = [
        m
        for m in await read_topic(
            pipeline.services.kafka_bootstrap, pipeline.topics.clean(VISIT_COMPLETED)
        )
        if m.key == gfe_id.encode()
    ]
    first_id = f"visit.completed:{gfe_id}:{body['timestamp']}"
    first = next(m for m in clean if dict(m.headers)["event_id"] == first_id.encode())
    letters = [dead_letter_of(first, stage) for stage in ("postgres", "email")]
    producer = AIOKafkaProducer(bootstrap_servers=pipeline.services.kafka_bootstrap, acks="all")
    await producer.start()
    try:
        for key, value, headers in letters:
            await producer.send_and_wait(pipeline.topics.dlq, value, key=key, headers=headers)
    finally:
        await producer.stop()
    postgres_before = metric(
        await pipeline.metrics("postgres"),
        "streams_events_total",
        stage="postgres",
        outcome="written",
    )
    outputs.append(replayed := await cli(pipeline, "dlq", "replay", "--event-id", first_id))
    assert "replayed 2 of 2" in replayed

    async def postgres_took_it() -> bool:
        text = await pipeline.metrics("postgres")
        return (
            metric(text, "streams_events_total", stage="postgres", outcome="written")
            > postgres_before
        )

    await wait_until(postgres_took_it, 30, "the postgres retry")

    async def email_skipped_it() -> bool:
        text = await pipeline.metrics("email")
        return metric(
            text, "streams_events_total", stage="email", outcome="forgotten"
        ) >= 1 + metric(email_before, "streams_events_total", stage="email", outcome="forgotten")

    await wait_until(email_skipped_it, 30, "the email stage to skip the late duplicate")
    await asyncio.sleep(2)
    rows = await pipeline.fetch(
        "SELECT patient_name, patient_email, patient_email_index, phi_redacted_at, completed_at"
        " FROM gfe_visits WHERE gfe_id = $1",
        gfe_id,
    )
    assert [(r["patient_name"], r["patient_email"], r["patient_email_index"]) for r in rows] == [
        (None, None, None)
    ]
    events = await pipeline.fetch(
        "SELECT payload, phi_redacted_at FROM spakinect_events WHERE entity_id = $1", gfe_id
    )
    assert len(events) == 2
    for event in events:
        assert orjson.loads(event["payload"])["data"]["patient_details"] is None
        assert event["phi_redacted_at"] is not None
    assert len(mails_for(pipeline, gfe_id)) == 1  # the one sent before the forget
    (kept,) = await pipeline.fetch("SELECT * FROM gfe_visits WHERE gfe_id = $1", kept_id)
    assert open_visit(kept, pipeline.keyring)["patient_email"] == "jane.smith@example.com"

    # The email stage's state keeps event ids, never the patient.
    for topic in await email_changelogs(pipeline):
        for message in await read_topic(pipeline.services.kafka_bootstrap, topic):
            assert all(c.encode() not in (message.value or b"") for c in CANARIES)

    listing = await cli(pipeline, "audit", "list", "--action", "phi.*")
    outputs.append(listing)
    assert "phi.forget" in listing
    assert "patient asked" in listing
    assert f"email-index:{pipeline.keyring.email_index(CANARY_EMAIL)}" in listing
    replays = await cli(pipeline, "audit", "list", "--action", "dlq.replay", "--since", "1h")
    assert first_id in replays
    outputs.append(replays)

    # Rotation through the CLI, then the worker logs and every output: no patient, no key.
    rotated_env = {
        **pipeline.env,
        "PHI_ENCRYPTION_KEYS": f"{new_key_entry('rotated')},{pipeline.env['PHI_ENCRYPTION_KEYS']}",
    }
    outputs.append(rotation := await cli(pipeline, "phi", "rotate-key", "--quiet", env=rotated_env))
    assert "re-sealed with key rotated: 1 gfe_visits row(s), 1 event row(s)" in rotation
    new_only = keyring_from(
        rotated_env["PHI_ENCRYPTION_KEYS"].split(",")[0], pipeline.env["PHI_INDEX_KEY"]
    )
    for row in await pipeline.fetch("SELECT * FROM gfe_visits WHERE phi_redacted_at IS NULL"):
        assert open_visit(row, new_only)["patient_name"]
        with pytest.raises(PhiDecryptError):
            open_visit(row, pipeline.keyring)
    postgres = await pipeline.metrics("postgres")
    assert (
        metric(postgres, "phi_redacted_rows_total", table="gfe_visits", reason="written_redacted")
        >= 1
    )  # the late duplicate
    code, output = await run_cli(pipeline, "phi", "sweep")
    assert code == 2
    assert "PHI_RETENTION is not set" in output
    outputs.append(
        swept := await cli(pipeline, "phi", "sweep", env={**rotated_env, "PHI_RETENTION": "30d"})
    )
    assert "redacted: 1 gfe_visits row(s), 1 event row(s)" in swept  # the kept, 2024 visit
    secrets = [
        *(entry.split(":", 1)[1] for entry in rotated_env["PHI_ENCRYPTION_KEYS"].split(",")),
        pipeline.env["PHI_INDEX_KEY"],
    ]
    logged = "".join(p.read_text(errors="replace") for p in pipeline.logs.glob("*.log"))
    assert logged
    for text in (logged, *outputs):
        for needle in (*CANARIES, *secrets):
            assert needle not in text


async def test_the_postgres_stage_refuses_to_start_without_a_key(pipeline: Pipeline) -> None:
    env = {k: v for k, v in pipeline.env.items() if not k.startswith("PHI_")}
    env_without = {**env, "PHI_ENCRYPTION_KEYS": "", "PHI_INDEX_KEY": ""}
    code, output = await run_cli(pipeline, "worker", "postgres", env=env_without)
    assert code == 2
    assert "PHI_ENCRYPTION_KEYS is required" in output
    code, output = await run_cli(pipeline, "worker", "email", env=env_without)
    assert code == 2
    assert "PHI_INDEX_KEY is required" in output


async def test_dlq_replay_is_refused_when_it_cannot_be_audited(pipeline: Pipeline) -> None:
    env = {**pipeline.env, "POSTGRES_DSN": "postgresql://nobody@127.0.0.1:1/none"}
    code, output = await run_cli(pipeline, "dlq", "replay", "--event-id", "nothing", env=env)
    assert code != 0
    assert "cannot write the audit log" in output
    assert "replayed" not in output
