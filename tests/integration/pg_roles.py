"""Two database roles on the test server: the tables' owner (migrations) and the application.

The owner is a plain login role that owns its database (not a superuser), as
on a managed server; the application's role is a login member of
``spakinect_app`` (migration 0005), as docs/patient-data.md tells operators.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

from sinks.postgres.migrate import migrate


@dataclass(frozen=True)
class RoleDsns:
    owner: str
    app: str
    admin: str  # the server's superuser, on the same database (for what only it may do)


def as_role(dsn: str, user: str, password: str, database: str) -> str:
    parts = urlsplit(dsn)
    host = parts.hostname or "127.0.0.1"
    netloc = f"{quote(user)}:{quote(password)}@{host}:{parts.port or 5432}"
    return urlunsplit((parts.scheme, netloc, f"/{database}", parts.query, ""))


async def two_roles(admin_dsn: str) -> RoleDsns:
    """A fresh database owned by a new owner role, migrated by it, and an application role."""
    unique = uuid.uuid4().hex[:8]
    owner, app, database = f"owner_{unique}", f"app_{unique}", f"roles_{unique}"
    password = uuid.uuid4().hex
    conn = await asyncpg.connect(admin_dsn)
    try:
        # CREATEROLE: the first migration on a server creates the group role spakinect_app.
        await conn.execute(f"CREATE ROLE {owner} LOGIN CREATEROLE PASSWORD '{password}'")
        await conn.execute(f"CREATE DATABASE {database} OWNER {owner}")
    finally:
        await conn.close()
    owner_dsn = as_role(admin_dsn, owner, password, database)
    await migrate(owner_dsn)
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"CREATE ROLE {app} LOGIN PASSWORD '{password}' IN ROLE spakinect_app")
    finally:
        await conn.close()
    base, _, _ = admin_dsn.rpartition("/")
    return RoleDsns(owner_dsn, as_role(admin_dsn, app, password, database), f"{base}/{database}")
