"""Versioned SQL migrations, applied in order under a Postgres advisory lock.

Each ``migrations/NNNN_name.sql`` runs once, in its own transaction, and is
recorded in ``spakinect_schema_migrations``; concurrent starters (several
writer replicas) wait on the lock instead of racing.

Migrations run as the tables' owner (``POSTGRES_MIGRATIONS_DSN``); the
application's role (``POSTGRES_DSN``, a member of ``spakinect_app``) has no
DDL rights, so with it :func:`migrate` only checks that nothing is pending.
"""

from __future__ import annotations

import logging
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

LOCK_ID = 0x5A4B_1E47  # arbitrary, stable: "spakinect migrations"
EXISTS = "SELECT to_regclass('spakinect_schema_migrations')"


def migration_files() -> list[tuple[str, str]]:
    """(version, SQL) pairs in order, read from the package's ``migrations`` folder."""
    folder = resources.files("sinks.postgres") / "migrations"
    files = sorted((f for f in folder.iterdir() if f.name.endswith(".sql")), key=lambda f: f.name)
    return [(f.name.removesuffix(".sql"), f.read_text()) for f in files]


async def migrate(dsn: str) -> list[str]:
    """Apply pending migrations; return the versions applied now."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", LOCK_ID)
        try:
            if await conn.fetchval(EXISTS) is None:  # the app's role may not CREATE, even IF NOT
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS spakinect_schema_migrations ("
                    " version text PRIMARY KEY,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
            done = {
                r["version"]
                for r in await conn.fetch("SELECT version FROM spakinect_schema_migrations")
            }
            applied = []
            for version, sql in migration_files():
                if version in done:
                    continue
                try:
                    async with conn.transaction():
                        await conn.execute(sql)
                        await conn.execute(
                            "INSERT INTO spakinect_schema_migrations (version) VALUES ($1)",
                            version,
                        )
                except asyncpg.InsufficientPrivilegeError:
                    log.error(
                        "migration %s needs the tables' owner: run `spakinect-pipeline migrate`"
                        " with POSTGRES_MIGRATIONS_DSN",
                        version,
                    )
                    raise
                log.info("applied migration %s", version)
                applied.append(version)
            return applied
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_ID)
    finally:
        await conn.close()
