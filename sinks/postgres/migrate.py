"""Versioned SQL migrations, applied in order under a Postgres advisory lock.

Each ``migrations/NNNN_name.sql`` runs once, in its own transaction, and is
recorded in ``spakinect_schema_migrations``; concurrent starters (several
writer replicas) wait on the lock instead of racing.
"""

from __future__ import annotations

import logging
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

LOCK_ID = 0x5A4B_1E47  # arbitrary, stable: "spakinect migrations"


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
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO spakinect_schema_migrations (version) VALUES ($1)", version
                    )
                log.info("applied migration %s", version)
                applied.append(version)
            return applied
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", LOCK_ID)
    finally:
        await conn.close()
