"""The audit trail of patient-data access: ``audit.record(...)`` and ``audit.entries(...)``.

One append-only Postgres table, ``audit_log`` (a trigger refuses UPDATE,
DELETE and TRUNCATE): who (``os:<user>`` for the CLI, ``console:<user>`` for
an operator console), when, what action on which target, why, and from which
client address when there is one. Every tool that erases, re-keys, replays
or shows patient data records here *before* it acts, so an action that ran
is never missing from the trail. Targets and details never hold plaintext
patient data (a forgotten email appears as its blind index).
"""

from __future__ import annotations

import getpass
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

INSERT = """
INSERT INTO audit_log (actor, action, target, reason, client_addr, details)
VALUES ($1, $2, $3, $4, $5::inet, $6::jsonb)
RETURNING id
"""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    id: int
    at: datetime
    actor: str
    action: str
    target: str
    reason: str | None
    client_addr: str | None
    details: dict[str, Any]


def os_actor() -> str:
    """The CLI's actor: the operating-system user running it."""
    try:
        return f"os:{getpass.getuser()}"
    except (KeyError, OSError):
        return "os:unknown"


async def record(
    conn: asyncpg.Connection | asyncpg.Pool,
    action: str,
    target: str,
    *,
    actor: str | None = None,
    reason: str | None = None,
    client_addr: str | None = None,
    details: Mapping[str, Any] | None = None,
) -> int:
    """Append one entry; returns its id. Runs in the caller's transaction when given one."""
    entry_id: int = await conn.fetchval(
        INSERT,
        actor or os_actor(),
        action,
        target,
        reason,
        client_addr,
        orjson.dumps(dict(details or {})).decode(),
    )
    return entry_id


async def entries(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    action: str | None = None,
    since: datetime | None = None,
    target: str | None = None,
    limit: int = 200,
) -> list[AuditEntry]:
    """Newest first; ``action`` and ``target`` match exactly or as a ``prefix*``."""
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in (("action", action), ("target", target)):
        if value is None:
            continue
        if value.endswith("*"):
            prefix = value[:-1].replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            args.append(prefix + "%")
            clauses.append(f"{column} LIKE ${len(args)}")
        else:
            args.append(value)
            clauses.append(f"{column} = ${len(args)}")
    if since is not None:
        args.append(since)
        clauses.append(f"at >= ${len(args)}")
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    args.append(limit)
    rows = await conn.fetch(
        "SELECT id, at, actor, action, target, reason, host(client_addr) AS client_addr,"  # noqa: S608 - only placeholders are interpolated
        f" details FROM audit_log {where} ORDER BY id DESC LIMIT ${len(args)}",
        *args,
    )
    return [AuditEntry(**{**dict(row), "details": orjson.loads(row["details"])}) for row in rows]


def lines(found: list[AuditEntry]) -> Iterator[str]:
    """One line per entry, for ``spakinect-pipeline audit list``."""
    for e in found:
        details = orjson.dumps(e.details).decode() if e.details else ""
        yield "\t".join(
            [
                e.at.isoformat(timespec="seconds"),
                e.actor,
                e.action,
                e.target,
                e.client_addr or "-",
                e.reason or "-",
                details,
            ]
        )
