"""Patient data in Postgres (real server): sealed at rest, re-keyed, swept, forgotten, audited."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
import pytest

from devstack.postgres import create_database
from events.envelope import Disposition
from sinks.base import InvalidBatch
from sinks.postgres.erasure import ErasureMarkers, forget
from sinks.postgres.migrate import migrate
from sinks.postgres.protect import open_payload, open_visit
from sinks.postgres.rotate import pending, rotate
from sinks.postgres.writer import PostgresSink
from spakinect_pipeline import audit
from spakinect_pipeline.phi.crypto import PhiDecryptError, keyring_from, new_key_entry
from tests.helpers import wait_until
from tests.services import Services
from tests.unit.test_rows import rec, visit

pytestmark = pytest.mark.integration

INDEX = new_key_entry().split(":", 1)[1]
OLD, NEW = new_key_entry("old"), new_key_entry("new")
RING = keyring_from(OLD, INDEX)
NOW = datetime(2026, 11, 29, 12, tzinfo=UTC)


def patient_visit(gfe_id: str, ts: int, email: str = "jane.smith@example.com") -> dict[str, object]:
    body = visit(ts, gfe_id=gfe_id)
    body["data"]["patient_details"] = dict(body["data"]["patient_details"], email=email)
    return body


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


async def write(dsn: str, *bodies: dict[str, object], **options: object) -> PostgresSink:
    sink = PostgresSink(dsn, keyring=options.pop("keyring", RING), **options)  # type: ignore[arg-type]
    try:
        await sink.write([rec(b) for b in bodies])
    finally:
        await sink.stop()
    return sink


async def test_patient_fields_are_not_readable_with_sql_and_round_trip(
    dsn: str, conn: asyncpg.Connection
) -> None:
    await write(dsn, patient_visit("gfe_a", 1714675200000))
    row = await conn.fetchrow("SELECT * FROM gfe_visits WHERE gfe_id = 'gfe_a'")
    table_text = await conn.fetchval(
        "SELECT string_agg(t::text, ' ') FROM (SELECT * FROM gfe_visits UNION ALL"
        " SELECT NULL, NULL, NULL, NULL, payload::text, NULL, NULL, NULL, now(), event_id,"
        " now(), NULL, NULL FROM spakinect_events) t"
    )
    for needle in ("Jane", "Smith", "jane.smith", "example.com"):
        assert needle not in table_text
    assert row["location_id"] == "loc_12345"  # the rest stays plain
    assert open_visit(row, RING) == {
        "patient_name": "Jane Smith",
        "patient_first_name": "Jane",
        "patient_last_name": "Smith",
        "patient_email": "jane.smith@example.com",
    }
    event = await conn.fetchrow("SELECT event_id, payload FROM spakinect_events")
    assert (
        open_payload(event["event_id"], event["payload"], RING)["data"]["patient_details"]["email"]
        == "jane.smith@example.com"
    )
    found = await conn.fetchval(
        "SELECT gfe_id FROM gfe_visits WHERE patient_email_index = $1",
        RING.email_index("Jane.Smith@example.com "),
    )
    assert found == "gfe_a"


async def test_rotation_leaves_every_row_readable_with_the_new_key_only(
    dsn: str, conn: asyncpg.Connection
) -> None:
    await write(dsn, *(patient_visit(f"gfe_r{i}", 1714675200000 + i) for i in range(7)))
    # A row written before encryption existed (plaintext) is sealed by the rotation too.
    await conn.execute(
        "UPDATE gfe_visits SET patient_email = 'legacy@example.com', patient_email_index = NULL"
        " WHERE gfe_id = 'gfe_r6'"
    )
    both = keyring_from(f"{NEW},{OLD}", INDEX)
    assert await pending(conn, both) == {"gfe_visits": 7, "spakinect_events": 7}
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        # Stopped after the first batch of 3, then resumed: nothing is done twice.
        class Stop(Exception):
            pass

        def stop_after_first(_n: int) -> None:
            raise Stop

        with pytest.raises(Stop):
            await rotate(pool, both, batch=3, progress=stop_after_first)
        assert (await pending(conn, both))["gfe_visits"] == 4
        done = (await rotate(pool, both, batch=3)).done
    finally:
        await pool.close()
    assert done == {"gfe_visits": 4, "spakinect_events": 7}
    assert await pending(conn, both) == {"gfe_visits": 0, "spakinect_events": 0}
    new_only = keyring_from(NEW, INDEX)
    for row in await conn.fetch("SELECT * FROM gfe_visits"):
        assert open_visit(row, new_only)["patient_name"] == "Jane Smith"
        with pytest.raises(PhiDecryptError):
            open_visit(row, RING)
    legacy = await conn.fetchrow("SELECT * FROM gfe_visits WHERE gfe_id = 'gfe_r6'")
    assert open_visit(legacy, new_only)["patient_email"] == "legacy@example.com"
    assert legacy["patient_email_index"] == new_only.email_index("legacy@example.com")
    for event in await conn.fetch("SELECT event_id, payload FROM spakinect_events"):
        assert open_payload(event["event_id"], event["payload"], new_only)["data"]["gfe_id"]


async def test_retention_sweep_redacts_rows_older_than_the_window_and_leaves_newer(
    dsn: str, conn: asyncpg.Connection
) -> None:
    day_ms = 86_400_000
    now_ms = int(NOW.timestamp() * 1000)
    old = [patient_visit(f"gfe_old{i}", now_ms - 100 * day_ms - i) for i in range(5)]
    fresh = patient_visit("gfe_new", now_ms - 10 * day_ms)
    await write(dsn, *old, fresh, clock=lambda: NOW)  # no retention yet: all sealed
    sink = PostgresSink(dsn, keyring=RING, retention_s=90 * 86400, sweep_batch=2, clock=lambda: NOW)
    try:
        assert await sink.sweep_once() == {"gfe_visits": 5, "spakinect_events": 5}
        assert await sink.sweep_once() == {"gfe_visits": 0, "spakinect_events": 0}  # idempotent
        assert sink.redacted[("gfe_visits", "retention")] == 5
        # A late copy of an old visit is written redacted at once; its row stays redacted.
        await sink.write([rec(patient_visit("gfe_late", now_ms - 200 * day_ms))])
    finally:
        await sink.stop()
    rows = {r["gfe_id"]: r for r in await conn.fetch("SELECT * FROM gfe_visits")}
    for gfe_id in [f"gfe_old{i}" for i in range(5)] + ["gfe_late"]:
        assert rows[gfe_id]["patient_name"] is None
        assert rows[gfe_id]["phi_redacted_at"] == NOW
        assert rows[gfe_id]["location_id"] == "loc_12345"
    assert open_visit(rows["gfe_new"], RING)["patient_name"] == "Jane Smith"
    decisions = await conn.fetchval("SELECT count(*) FROM gfe_visit_treatments")
    assert decisions == 4 * 7  # the visits' decisions stay
    payloads = {
        r["entity_id"]: orjson.loads(r["payload"])
        for r in await conn.fetch("SELECT entity_id, payload FROM spakinect_events")
    }
    assert payloads["gfe_old0"]["data"]["patient_details"] is None
    assert payloads["gfe_old0"]["data"]["approved_treatments"] == ["Botox Injection"]
    assert isinstance(payloads["gfe_new"]["data"]["patient_details"], str)


async def test_forget_by_email_redacts_every_row_and_replays_stay_redacted(
    dsn: str, conn: asyncpg.Connection
) -> None:
    jane = [patient_visit(f"gfe_j{i}", 1714675200000 + i) for i in range(2)]
    other = patient_visit("gfe_other", 1714675200000, email="other@example.com")
    stale = patient_visit("gfe_j0", 1714675100000)  # an older event of the same visit
    await write(dsn, *jane, other)
    await PostgresSink(dsn, keyring=RING).write([rec(stale, Disposition.STALE)])

    dry = await forget(
        conn, RING.index, gfe_id=None, email="JANE.SMITH@example.com", now=NOW, dry_run=True
    )
    assert (dry.gfe_ids, len(dry.visits), len(dry.events)) == (["gfe_j0", "gfe_j1"], 2, 3)
    assert (
        await conn.fetchval("SELECT count(*) FROM gfe_visits WHERE phi_redacted_at IS NOT NULL")
        == 0
    )

    done = await forget(
        conn,
        RING.index,
        gfe_id=None,
        email="jane.smith@example.com",
        now=NOW,
        reason="patient request #12",
    )
    assert (len(done.visits), len(done.events), done.new_markers) == (2, 3, 3)
    again = await forget(conn, RING.index, gfe_id=None, email="jane.smith@example.com", now=NOW)
    assert (again.visits, again.events, again.new_markers) == ([], [], 0)  # idempotent

    # A replay of the same events, and a late, newer duplicate, write nothing back.
    newer = patient_visit("gfe_j1", 1714675300000)
    await write(dsn, *jane, stale, newer)
    rows = await conn.fetch("SELECT * FROM gfe_visits WHERE gfe_id LIKE 'gfe_j%' ORDER BY gfe_id")
    assert [r["patient_email"] for r in rows] == [None, None]
    assert all(r["phi_redacted_at"] is not None for r in rows)
    assert rows[1]["completed_at"] > rows[0]["completed_at"]  # the newer visit still applied
    events = await conn.fetch(
        "SELECT payload, patient_email_index FROM spakinect_events WHERE entity_id LIKE 'gfe_j%'"
    )
    assert len(events) == 4
    assert all(orjson.loads(e["payload"])["data"]["patient_details"] is None for e in events)
    assert all(e["patient_email_index"] is None for e in events)
    kept = await conn.fetchrow("SELECT * FROM gfe_visits WHERE gfe_id = 'gfe_other'")
    assert open_visit(kept, RING)["patient_email"] == "other@example.com"

    markers = ErasureMarkers(dsn, RING.index)
    try:
        assert await markers.forgotten("gfe_j0", [])
        assert await markers.forgotten(None, ["Jane.Smith@example.com"])
        assert not await markers.forgotten("gfe_other", ["other@example.com"])
    finally:
        await markers.stop()
    (entry, *_) = await audit.entries(conn, action="phi.forget")
    assert entry.reason is None  # newest first: the idempotent re-run
    assert {e.reason for e in await audit.entries(conn, action="phi.*")} >= {"patient request #12"}
    assert entry.target == f"email-index:{RING.email_index('jane.smith@example.com')}"
    assert "jane" not in (await conn.fetchval("SELECT string_agg(t::text, ' ') FROM audit_log t"))
    marker_text = await conn.fetchval("SELECT string_agg(t::text, ' ') FROM phi_erasures t")
    assert "jane" not in marker_text
    assert "gfe_j" not in marker_text


async def test_audit_log_refuses_update_delete_and_truncate(conn: asyncpg.Connection) -> None:
    entry_id = await audit.record(
        conn,
        "dlq.replay",
        "dlq:all",
        actor="os:tester",
        client_addr="10.0.0.7",
        details={"event_ids": ["e1"]},
    )
    for statement in (
        "UPDATE audit_log SET actor = 'someone else'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute(statement)
    (entry,) = await audit.entries(
        conn, target="dlq:*", since=datetime.now(UTC) - timedelta(hours=1)
    )
    assert (entry.id, entry.actor, entry.client_addr) == (entry_id, "os:tester", "10.0.0.7")
    assert entry.details == {"event_ids": ["e1"]}
    assert await audit.entries(conn, action="phi.forget") == []


async def test_the_stage_sweeps_on_start_and_again_every_interval(
    dsn: str, conn: asyncpg.Connection
) -> None:
    old_ms = int((NOW - timedelta(days=100)).timestamp() * 1000)
    await write(dsn, patient_visit("gfe_s1", old_ms))
    sink = PostgresSink(
        dsn, keyring=RING, retention_s=90 * 86400, sweep_interval_s=0.3, clock=lambda: NOW
    )
    redacted = "SELECT count(*) FROM gfe_visits WHERE phi_redacted_at IS NOT NULL"
    await sink.start()
    try:
        await wait_until(lambda: _equals(conn, redacted, 1), 10, "the first sweep")
        await write(dsn, patient_visit("gfe_s2", old_ms))  # by a writer without retention
        await wait_until(lambda: _equals(conn, redacted, 2), 10, "a later sweep")
    finally:
        await sink.stop()
    assert sink.redacted[("gfe_visits", "retention")] == 2


async def _equals(conn: asyncpg.Connection, sql: str, expected: int) -> bool:
    return bool(await conn.fetchval(sql) == expected)


async def test_forget_by_email_finds_rows_written_before_encryption(
    dsn: str, conn: asyncpg.Connection
) -> None:
    """Rows from before this version hold plain text and no blind index until re-keyed."""
    await write(dsn, patient_visit("gfe_plain", 1714675200000))
    await conn.execute(
        "UPDATE gfe_visits SET patient_email = ' Jane.Smith@Example.com', "
        "patient_email_index = NULL WHERE gfe_id = 'gfe_plain'"
    )
    await conn.execute(
        "UPDATE spakinect_events SET patient_email_index = NULL, payload = jsonb_set(payload, "
        "'{data,patient_details}', '{\"email\": \"jane.smith@example.com\"}') "
        "WHERE entity_id = 'gfe_plain'"
    )
    done = await forget(conn, RING.index, gfe_id=None, email="jane.smith@example.com", now=NOW)
    assert (done.gfe_ids, len(done.visits), len(done.events)) == (["gfe_plain"], 1, 1)
    row = await conn.fetchrow("SELECT * FROM gfe_visits WHERE gfe_id = 'gfe_plain'")
    assert row["patient_email"] is None
    assert row["phi_redacted_at"] is not None
    payload = orjson.loads(
        await conn.fetchval("SELECT payload FROM spakinect_events WHERE entity_id = 'gfe_plain'")
    )
    assert payload["data"]["patient_details"] is None


async def test_a_payload_json_cannot_hold_fails_the_batch_as_invalid_and_writes_nothing(
    dsn: str, conn: asyncpg.Connection
) -> None:
    """The payload is serialised while sealing, inside the transaction: it rolls back."""
    good = patient_visit("gfe_good", 1714675200000)
    huge = patient_visit("gfe_huge", 1714675200001)
    huge["data"]["note"] = 2**70  # decodes into a Python int; orjson cannot write it
    with pytest.raises(InvalidBatch, match=r"malformed record \(TypeError\)"):
        await write(dsn, good, huge)
    assert await conn.fetchval("SELECT count(*) FROM spakinect_events") == 0
    assert await conn.fetchval("SELECT count(*) FROM gfe_visits") == 0
    await write(dsn, good)  # the rest of the batch, once the record is isolated
    assert await conn.fetchval("SELECT count(*) FROM gfe_visits") == 1


async def test_new_visits_read_none_of_the_treatments_table(dsn: str) -> None:
    """Only a visit seen before has treatments to replace. Deleting by the whole batch's
    ids made Postgres, without statistics yet (a fresh deployment), guess a large share
    of gfe_visit_treatments and read all of it for every batch (190 seq scans of ~16,000
    rows in an 8,000-event run at 500/s; Postgres's CPU per event 3x); each batch's
    statements are also planned for its arrays (writer.SHARE_ERASURE_LOCK)."""
    bulk = await asyncpg.connect(dsn)
    try:
        await bulk.execute(
            "INSERT INTO gfe_visits (gfe_id, event_id, completed_at) "
            "SELECT 'gfe_bulk_' || i, 'e' || i, now() FROM generate_series(1, 20000) i"
        )
        await bulk.execute(
            "INSERT INTO gfe_visit_treatments (gfe_id, treatment_name, decision) "
            "SELECT 'gfe_bulk_' || i, 'Botox', 'approved' FROM generate_series(1, 20000) i"
        )
    finally:
        await bulk.close()  # its backend exits, flushing its table statistics
    conn = await asyncpg.connect(dsn)

    async def stats_with(inserted: int) -> dict[str, int] | None:
        stats = await table_stats(conn)
        return stats if stats["inserted"] >= inserted else None

    before = await wait_until(lambda: stats_with(20_000), 10, "the bulk insert's statistics")
    sink = PostgresSink(dsn, keyring=RING)
    try:
        for n in range(3):
            ids = [f"gfe_new_{n}_{i}" for i in range(100)]
            await sink.write([rec(visit(1_714_675_200_000, gfe_id=gfe_id)) for gfe_id in ids])
    finally:
        await sink.stop()  # its backends exit, flushing their table statistics
    try:
        written = await conn.fetchval(
            "SELECT count(*) FROM gfe_visit_treatments WHERE gfe_id LIKE 'gfe_new_%'"
        )
        assert written > 0
        expected = before["inserted"] + written
        after = await wait_until(lambda: stats_with(expected), 10, "the writer's statistics")
        assert after["seq_read"] - before["seq_read"] < 20_000
    finally:
        await conn.close()


async def table_stats(conn: asyncpg.Connection) -> dict[str, int]:
    """Rows of gfe_visit_treatments inserted, and read by sequential scans, so far."""
    await conn.execute("SELECT pg_stat_clear_snapshot()")
    row = await conn.fetchrow(
        "SELECT n_tup_ins, seq_tup_read FROM pg_stat_user_tables "
        "WHERE relname = 'gfe_visit_treatments'"
    )
    return {"inserted": int(row["n_tup_ins"] or 0), "seq_read": int(row["seq_tup_read"] or 0)}
