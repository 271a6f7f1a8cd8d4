"""Rotation past unreadable rows and beside a busy writer, audited sweeps, extra patient
fields, and a forget that takes the email from stdin or a file (real Postgres)."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import pytest

from devstack.postgres import create_database
from sinks.postgres.erasure import forget
from sinks.postgres.migrate import migrate
from sinks.postgres.protect import open_payload
from sinks.postgres.rotate import pending, rotate
from sinks.postgres.writer import PostgresSink
from spakinect_pipeline import audit
from spakinect_pipeline.phi.crypto import keyring_from, new_key_entry
from spakinect_pipeline.phi.paths import parse_paths
from tests.services import Services
from tests.unit.test_rows import rec

from .test_phi_store import INDEX, NOW, OLD, RING, patient_visit, write

pytestmark = pytest.mark.integration


@pytest.fixture
async def dsn(services: Services) -> str:
    url = await create_database(services.postgres_dsn, f"phi_{uuid.uuid4().hex[:8]}")
    await migrate(url)
    return url


@pytest.fixture
async def conn(dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(dsn)
    try:
        yield connection
    finally:
        await connection.close()


NEW, LOST = new_key_entry("new"), new_key_entry("lost")
BOTH = keyring_from(f"{NEW},{OLD}", INDEX)
PATHS = parse_paths("data.notes")
DAY_MS = 86_400_000


def noted(gfe_id: str, ts: int, email: str = "jane.smith@example.com") -> dict[str, object]:
    body = patient_visit(gfe_id, ts, email)
    body["data"]["notes"] = "Jane Smith asked for a call back"  # type: ignore[index]
    return body


async def test_rotation_reports_a_row_it_cannot_open_and_goes_on(
    dsn: str, conn: asyncpg.Connection
) -> None:
    await write(dsn, *(patient_visit(f"gfe_k{i}", 1714675200000 + i) for i in range(4)))
    await write(dsn, patient_visit("gfe_b0", 1714675200000), keyring=keyring_from(LOST, INDEX))
    await write(dsn, *(patient_visit(f"gfe_z{i}", 1714675200000 + i) for i in range(3)))
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        result = await rotate(pool, BOTH, batch=2)
    finally:
        await pool.close()
    assert result.done == {"gfe_visits": 7, "spakinect_events": 7}  # before and after it
    assert result.unreadable["gfe_visits"] == {"gfe_b0"}
    (event_id,) = result.unreadable["spakinect_events"]
    assert (
        await conn.fetchval("SELECT entity_id FROM spakinect_events WHERE event_id = $1", event_id)
        == "gfe_b0"
    )
    assert await pending(conn, BOTH) == {"gfe_visits": 1, "spakinect_events": 1}


async def test_rotation_and_a_busy_writer_never_deadlock_and_every_row_ends_resealed(
    dsn: str, conn: asyncpg.Connection
) -> None:
    ids = [f"gfe_{i:03d}" for i in range(120)]
    await write(dsn, *(patient_visit(g, 1714675200000) for g in ids))
    # A writer not restarted yet (rolling restart): it keeps sealing with the old key, so
    # the rows the rotation re-seals become pending again and the two keep meeting.
    writer = PostgresSink(dsn, keyring=RING, migrate_on_start=False)
    writing = True

    async def keep_writing() -> int:
        nonlocal writing
        try:
            for round_ in range(1, 21):  # newer versions of the same visits, descending order
                bodies = [patient_visit(g, 1714675200000 + round_) for g in reversed(ids)]
                await writer.write([rec(b) for b in bodies])
        finally:
            writing = False
        return round_

    async def keep_rotating(pool: asyncpg.Pool) -> int:
        runs = 0
        while writing:
            await rotate(pool, BOTH, batch=40)
            runs += 1
        return runs

    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=2)
    try:
        rounds, *runs = await asyncio.gather(
            keep_writing(), *(keep_rotating(pool) for _ in range(2))
        )
        assert rounds == 20  # a deadlock would have raised in the writer or a rotation
        assert min(runs) >= 2
        await rotate(pool, BOTH)
    finally:
        await pool.close()
        await writer.stop()
    assert await pending(conn, BOTH) == {"gfe_visits": 0, "spakinect_events": 0}


async def test_the_retention_sweep_is_audited_batch_by_batch(
    dsn: str, conn: asyncpg.Connection
) -> None:
    now_ms = int(NOW.timestamp() * 1000)
    await write(
        dsn,
        *(noted(f"gfe_old{i}", now_ms - 100 * DAY_MS - i) for i in range(3)),
        clock=lambda: NOW,
        extra_paths=PATHS,
    )
    sink = PostgresSink(
        dsn,
        keyring=RING,
        retention_s=90 * 86400,
        sweep_batch=2,
        clock=lambda: NOW,
        extra_paths=PATHS,
    )
    try:
        assert await sink.sweep_once() == {"gfe_visits": 3, "spakinect_events": 3}
        assert await sink.sweep_once() == {"gfe_visits": 0, "spakinect_events": 0}
    finally:
        await sink.stop()
    entries = await audit.entries(conn, action="phi.retention-sweep")
    assert {e.actor for e in entries} == {"system:retention-sweep"}
    swept = [i for e in entries if e.target == "table:gfe_visits" for i in e.details["ids"]]
    assert sorted(swept) == ["gfe_old0", "gfe_old1", "gfe_old2"]
    assert len(entries) == 4  # two batches per table; the empty second sweep wrote nothing
    for (payload,) in await conn.fetch("SELECT payload FROM spakinect_events"):
        assert "Jane" not in payload  # the extra field is nulled with the patient details


async def test_a_forget_nulls_extra_patient_fields_and_leaves_other_patients_sealed(
    dsn: str, conn: asyncpg.Connection
) -> None:
    await write(dsn, noted("gfe_x", 1714675200000), extra_paths=PATHS)
    await write(dsn, noted("gfe_y", 1714675200001, "other@example.com"), extra_paths=PATHS)
    text = await conn.fetchval("SELECT string_agg(payload::text, ' ') FROM spakinect_events")
    assert "Jane" not in text
    await forget(
        conn,
        RING.index,
        gfe_id=None,
        email="jane.smith@example.com",
        now=datetime.now(UTC),
        extra_paths=PATHS,
    )
    rows = {
        r[0]: r
        for r in await conn.fetch("SELECT entity_id, event_id, payload FROM spakinect_events")
    }
    gone = open_payload(rows["gfe_x"][1], rows["gfe_x"][2], RING, PATHS)
    assert gone["data"]["notes"] is None
    assert gone["data"]["patient_details"] is None
    kept = open_payload(rows["gfe_y"][1], rows["gfe_y"][2], RING, PATHS)
    assert kept["data"]["notes"] == "Jane Smith asked for a call back"


@pytest.mark.parametrize("source", ["stdin", "file"])
async def test_phi_forget_takes_the_email_from_stdin_or_a_file(
    dsn: str, conn: asyncpg.Connection, services: Services, tmp_path: Path, source: str
) -> None:
    await write(dsn, patient_visit("gfe_s", 1714675200000, "secret.patient@example.com"))
    who = tmp_path / "who"
    who.write_text("secret.patient@example.com\n")
    flag = ["--patient-email", "-"] if source == "stdin" else ["--patient-email-file", str(who)]
    env = {
        **os.environ,
        "POSTGRES_DSN": dsn,
        "PHI_INDEX_KEY": INDEX,
        "KAFKA_BOOTSTRAP_SERVERS": services.kafka_bootstrap,
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "cli.main",
        "phi",
        "forget",
        *flag,
        "--reason",
        "test",
        env=env,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate(b"secret.patient@example.com\n")
    assert process.returncode == 0, output.decode()
    assert "secret.patient" not in output.decode()
    assert "visits found: gfe_s" in output.decode()
    assert await conn.fetchval("SELECT phi_redacted_at FROM gfe_visits WHERE gfe_id = 'gfe_s'")
    (entry,) = await audit.entries(conn, action="phi.forget")
    assert entry.target == f"email-index:{RING.email_index('secret.patient@example.com')}"
