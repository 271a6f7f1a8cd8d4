"""``make up``'s console: a local admin created once (its password printed once), a session key."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg

from console import users

ADMIN = "admin"


async def _ensure_admin(dsn: str) -> str | None:
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1)
    try:
        if await users.get(pool, ADMIN) is not None:
            return None
        password = secrets.token_urlsafe(15)
        await users.add(pool, ADMIN, "admin", password, "os:make-up")
        return password
    finally:
        await pool.close()


def ensure_admin(dsn: str) -> str | None:
    """The new admin's password, or None when the local admin exists already."""
    return asyncio.run(_ensure_admin(dsn))


def session_key() -> str:
    return secrets.token_urlsafe(32)
