"""Console users in Postgres (``console_users``): argon2id hashes, one role each.

Used by the console's login and by ``spakinect-pipeline users add|remove|passwd``.
Every change is written to the audit log in the same transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import anyio
import asyncpg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from console.auth import ROLES, generation
from spakinect_pipeline import audit

USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 12
_hasher = PasswordHasher()
# Verifying an unknown user costs the same as a known one: no user-name oracle by timing.
_DUMMY_HASH = _hasher.hash("not a password of anybody's")


class UserError(ValueError):
    """A user name, role or password that cannot be accepted; the message says why."""


@dataclass(frozen=True, slots=True)
class User:
    username: str
    role: str
    generation: str = ""  # sessions issued under another one are void (see console.auth)


_SELECT = (
    "SELECT username, role, password_hash, session_epoch FROM console_users WHERE username = $1"
)


def _user(row: asyncpg.Record) -> User:
    return User(
        row["username"], row["role"], generation(row["password_hash"], row["session_epoch"])
    )


def check(username: str, role: str | None = None, password: str | None = None) -> None:
    if not USERNAME.match(username):
        raise UserError("user names are 1 to 64 of a-z 0-9 _ . @ - (lower case)")
    if role is not None and role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}")
    if password is not None and len(password) < MIN_PASSWORD:
        raise UserError(f"passwords need at least {MIN_PASSWORD} characters")


async def add(pool: asyncpg.Pool, username: str, role: str, password: str, actor: str) -> None:
    check(username, role, password)
    async with pool.acquire() as conn, conn.transaction():
        done = await conn.fetchval(
            "INSERT INTO console_users (username, password_hash, role) VALUES ($1, $2, $3)"
            " ON CONFLICT (username) DO NOTHING RETURNING username",
            username,
            _hasher.hash(password),
            role,
        )
        if done is None:
            raise UserError(f"user {username} exists already")
        await audit.record(
            conn, "user.add", f"user:{username}", actor=actor, details={"role": role}
        )


async def remove(pool: asyncpg.Pool, username: str, actor: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        done = await conn.fetchval(
            "DELETE FROM console_users WHERE username = $1 RETURNING username", username
        )
        if done is None:
            raise UserError(f"no user {username}")
        await audit.record(conn, "user.remove", f"user:{username}", actor=actor)


async def passwd(pool: asyncpg.Pool, username: str, password: str, actor: str) -> None:
    check(username, password=password)
    async with pool.acquire() as conn, conn.transaction():
        done = await conn.fetchval(
            "UPDATE console_users SET password_hash = $2, session_epoch = session_epoch + 1,"
            " updated_at = clock_timestamp()"
            " WHERE username = $1 RETURNING username",
            username,
            _hasher.hash(password),
        )
        if done is None:
            raise UserError(f"no user {username}")
        await audit.record(conn, "user.passwd", f"user:{username}", actor=actor)


async def get(pool: asyncpg.Pool, username: str) -> User | None:
    row = await pool.fetchrow(_SELECT, username)
    return _user(row) if row else None


async def end_sessions(pool: asyncpg.Pool, username: str) -> None:
    """Void every session of ``username`` (log out everywhere): bump its ``session_epoch``."""
    await pool.execute(
        "UPDATE console_users SET session_epoch = session_epoch + 1 WHERE username = $1", username
    )


async def listing(pool: asyncpg.Pool) -> list[User]:
    rows = await pool.fetch("SELECT username, role FROM console_users ORDER BY username")
    return [User(r["username"], r["role"]) for r in rows]


async def verify(pool: asyncpg.Pool, username: str, password: str) -> User | None:
    """The user when the password matches, else None (same work either way)."""
    row = await pool.fetchrow(_SELECT, username)
    try:
        # argon2 takes tens of ms of CPU: in a thread, so other requests are not stalled.
        await anyio.to_thread.run_sync(
            _hasher.verify, row["password_hash"] if row else _DUMMY_HASH, password
        )
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    return _user(row) if row else None
