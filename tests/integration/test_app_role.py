"""The application's database role cannot rewrite the audit (real server), and still runs.

Migrations run as the tables' owner; the writer, the email stage's marker
lookups, ``phi forget``/``rotate-key``/``sweep`` and the console run as a
member of ``spakinect_app``. That role may only INSERT and SELECT
``audit_log`` (and ``phi_erasures``), and has no DDL: it cannot drop the
append-only trigger the way the owner can.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import pytest

from console import replays, users
from sinks.postgres.erasure import ErasureMarkers, forget
from sinks.postgres.migrate import migrate
from sinks.postgres.rotate import rotate
from sinks.postgres.writer import PostgresSink
from spakinect_pipeline import audit
from spakinect_pipeline.phi.crypto import keyring_from, new_key_entry
from streams.dlq_tools import DeadLetter
from tests.services import Services
from tests.unit.test_rows import rec

from .pg_roles import RoleDsns, two_roles
from .test_phi_store import patient_visit

pytestmark = pytest.mark.integration

INDEX = new_key_entry().split(":", 1)[1]
OLD, NEW = new_key_entry("old"), new_key_entry("new")
RING = keyring_from(OLD, INDEX)

REFUSED_TO_THE_APP = [
    "UPDATE audit_log SET reason = 'rewritten'",
    "DELETE FROM audit_log",
    "TRUNCATE audit_log",
    "DROP TABLE audit_log",
    "DROP TRIGGER audit_log_no_update_delete ON audit_log",
    "DROP TRIGGER audit_log_no_truncate ON audit_log",
    "ALTER TABLE audit_log DISABLE TRIGGER USER",
    "DROP FUNCTION audit_log_append_only() CASCADE",
    "ALTER TABLE audit_log OWNER TO CURRENT_USER",
    "DELETE FROM phi_erasures",
    "UPDATE phi_erasures SET kind = 'gfe_id'",
    "CREATE TABLE sneaky (id int)",
    "ALTER TABLE gfe_visits ADD COLUMN sneaky text",
    "DROP TABLE gfe_visits",
]


@pytest.fixture
async def roles(services: Services) -> RoleDsns:
    return await two_roles(services.postgres_dsn)


@pytest.fixture
async def app(roles: RoleDsns) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(roles.app)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.mark.parametrize("statement", REFUSED_TO_THE_APP)
async def test_the_application_role_cannot_rewrite_the_audit_or_change_the_schema(
    app: asyncpg.Connection, statement: str
) -> None:
    await audit.record(app, "test.entry", "target:x")  # it may append
    with pytest.raises(asyncpg.InsufficientPrivilegeError) as refused:
        await app.execute(statement)
    # Refused by the privileges, not by the trigger (which the owner could drop).
    assert "append-only" not in str(refused.value)
    assert [e.action for e in await audit.entries(app)] == ["test.entry"]


async def test_the_owner_could_drop_the_trigger_so_the_owner_is_not_the_application(
    roles: RoleDsns, app: asyncpg.Connection
) -> None:
    await audit.record(app, "test.entry", "target:x")
    owner = await asyncpg.connect(roles.owner)
    try:
        tx = owner.transaction()
        await tx.start()
        await owner.execute("DROP TRIGGER audit_log_no_update_delete ON audit_log")
        assert await owner.execute("DELETE FROM audit_log") == "DELETE 1"
        await tx.rollback()  # what the separation of roles guards against
        assert not await owner.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = user")
        owner_name = roles_owner(roles)
        member = await app.fetchval("SELECT pg_has_role(current_user, $1, 'MEMBER')", owner_name)
        assert member is False
    finally:
        await owner.close()


def roles_owner(roles: RoleDsns) -> str:
    return roles.owner.split("//", 1)[1].split(":", 1)[0]


async def test_every_table_is_granted_to_the_application_and_none_is_owned_by_it(
    app: asyncpg.Connection,
) -> None:
    tables = await app.fetch(
        "SELECT c.relname, pg_get_userbyid(c.relowner) AS owner,"
        " has_table_privilege('spakinect_app', c.oid, 'SELECT') AS readable"
        " FROM pg_class c WHERE c.relnamespace = current_schema()::regnamespace"
        " AND c.relkind = 'r'"
    )
    assert len(tables) >= 9
    await app.execute("GRANT UPDATE, DELETE ON audit_log TO CURRENT_USER")  # a warning, no grant
    for right in ("UPDATE", "DELETE", "TRUNCATE"):
        assert not await app.fetchval("SELECT has_table_privilege('audit_log', $1)", right)
    assert [t["relname"] for t in tables if not t["readable"]] == []  # a later table ungranted
    assert {t["owner"] for t in tables} != {await app.fetchval("SELECT current_user")}
    assert "spakinect_app" not in {t["owner"] for t in tables}


async def test_the_pipeline_runs_with_the_application_role(
    roles: RoleDsns, app: asyncpg.Connection
) -> None:
    assert await migrate(roles.app) == []  # up to date: only checks, creates nothing
    now = datetime.now(UTC)
    sink = PostgresSink(roles.app, keyring=RING, migrations_dsn=roles.owner)
    old = int(now.timestamp() * 1000) - 3 * 86_400_000
    fresh = int(now.timestamp() * 1000)
    try:
        await sink.start()
        await sink.write([rec(patient_visit("gfe_a", fresh)), rec(patient_visit("gfe_b", old))])
        await sink.write([rec(patient_visit("gfe_a", fresh + 1, "other@example.com"))])
    finally:
        await sink.stop()
    sweeper = PostgresSink(roles.app, keyring=RING, retention_s=86400, migrate_on_start=False)
    try:
        assert await sweeper.sweep_once() == {"gfe_visits": 1, "spakinect_events": 1}
    finally:
        await sweeper.stop()
    assert await app.fetchval("SELECT count(*) FROM gfe_visits WHERE gfe_id = 'gfe_a'") == 1
    result = await forget(app, RING.index, gfe_id=None, email="other@example.com", now=now)
    assert result.gfe_ids == ["gfe_a"]
    markers = ErasureMarkers(roles.app, RING.index)
    try:
        assert await markers.forgotten("gfe_a", []) is True
    finally:
        await markers.stop()
    pool = await asyncpg.create_pool(roles.app, min_size=1, max_size=1)
    try:
        await sink_write(roles, pool)
        done = (await rotate(pool, keyring_from(f"{NEW},{OLD}", INDEX))).done
        assert done == {"gfe_visits": 1, "spakinect_events": 1}
        await users.add(pool, "ops", "admin", "a long enough password", "os:test")
        await users.passwd(pool, "ops", "another long password", "os:test")
        await users.remove(pool, "ops", "os:test")
        headers = {"event_id": "e1", "stage": "postgres"}
        letter = DeadLetter(7, 0, now, None, None, headers, [])
        await replays.record(pool, "t.dlq", [letter], "console:ops", "sent")
        assert (0, 7) in await replays.latest(pool, "t.dlq")
    finally:
        await pool.close()
    actions = [e.action for e in await audit.entries(app)]
    sweeps = ["phi.retention-sweep"] * 2  # one per table, in the sweep's transactions
    assert actions == ["user.remove", "user.passwd", "user.add", "phi.forget", *sweeps]


async def sink_write(roles: RoleDsns, pool: asyncpg.Pool) -> None:
    """One more visit, so that the rotation has a sealed row to re-seal."""
    sink = PostgresSink(roles.app, keyring=RING, migrate_on_start=False)
    try:
        now_ms = int(datetime.now(UTC).timestamp() * 1000)
        await sink.write([rec(patient_visit("gfe_c", now_ms))])
    finally:
        await sink.stop()
