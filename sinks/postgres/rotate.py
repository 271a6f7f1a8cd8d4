"""``phi rotate-key``: re-seal every patient field with the newest key, in batches, resumable.

A row is pending while any of its patient fields is not sealed with the
newest key of ``PHI_ENCRYPTION_KEYS`` (older key, or plaintext written before
encryption existed). Each batch is read in primary-key order and rewritten in
its own transaction, so a stopped run keeps what it did and the next run
picks up the rows still pending. A row the writer changed or a forget
redacted meanwhile is left to them (the update checks it is unchanged).

A row that does not open (its key id is no longer configured, or it is
damaged) is reported by id and passed over; the run goes on. A batch locks
its rows ``FOR UPDATE SKIP LOCKED`` in primary-key order: it never waits for
a row the writer (or a forget) holds, so the two cannot deadlock, and a row
skipped that way is picked up by the next pass, until a pass re-seals
nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import orjson

from sinks.postgres.protect import PATIENT_COLUMNS, payload_context, visit_context
from sinks.postgres.redact import PHI_EVENT, rows_changed
from sinks.postgres.writer import ERASURE_LOCK, SHARE_ERASURE_LOCK
from spakinect_pipeline.phi.crypto import Keyring, PhiDecryptError, is_ciphertext

_STALE = "({c} IS NOT NULL AND NOT starts_with({c}, $1))"
VISITS_WHERE = (
    "phi_redacted_at IS NULL AND (" + " OR ".join(_STALE.format(c=c) for c in PATIENT_COLUMNS) + ")"
)
EVENTS_WHERE = (
    f"phi_redacted_at IS NULL AND {PHI_EVENT}"
    + """
    AND jsonb_typeof(payload #> '{data,patient_details}') IN ('object', 'string')
    AND NOT (jsonb_typeof(payload #> '{data,patient_details}') = 'string'
             AND starts_with(payload #>> '{data,patient_details}', $1))"""
)

COUNT_VISITS = f"SELECT count(*) FROM gfe_visits WHERE {VISITS_WHERE}"  # noqa: S608 - constants
COUNT_EVENTS = f"SELECT count(*) FROM spakinect_events WHERE {EVENTS_WHERE}"  # noqa: S608
PENDING_VISITS = f"""
SELECT gfe_id, event_id, {", ".join(PATIENT_COLUMNS)} FROM gfe_visits
WHERE gfe_id > $2 AND {VISITS_WHERE} ORDER BY gfe_id LIMIT $3 FOR UPDATE SKIP LOCKED
"""  # noqa: S608 - constants only
PENDING_EVENTS = f"""
SELECT event_id, payload FROM spakinect_events
WHERE event_id > $2 AND {EVENTS_WHERE} ORDER BY event_id LIMIT $3 FOR UPDATE SKIP LOCKED
"""  # noqa: S608 - constants only
RESEAL_VISITS = """
UPDATE gfe_visits v SET patient_name = u.n, patient_first_name = u.f, patient_last_name = u.l,
    patient_email = u.e, patient_email_index = u.i
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
    AS u(gfe_id, event_id, n, f, l, e, i)
WHERE v.gfe_id = u.gfe_id AND v.event_id = u.event_id AND v.phi_redacted_at IS NULL
"""
RESEAL_EVENTS = """
UPDATE spakinect_events s SET payload = u.payload, patient_email_index = u.i
FROM unnest($1::text[], $2::jsonb[], $3::text[]) AS u(event_id, payload, i)
WHERE s.event_id = u.event_id AND s.phi_redacted_at IS NULL
"""


def _open(keyring: Keyring, value: str | None, context: str) -> str | None:
    """Plaintext of a stored value: ciphertext under any configured key, or legacy plaintext."""
    if value is None or not is_ciphertext(value):
        return value
    return keyring.decrypt(value, context)


def reseal_visit(row: Any, keyring: Keyring) -> tuple[str | None, ...]:
    gfe_id = row["gfe_id"]
    plain = [_open(keyring, row[c], visit_context(c, gfe_id)) for c in PATIENT_COLUMNS]
    sealed = [
        keyring.encrypt(v, visit_context(c, gfe_id)) if v is not None else None
        for c, v in zip(PATIENT_COLUMNS, plain, strict=True)
    ]
    index = keyring.email_index(plain[3]) if plain[3] else None
    return (gfe_id, row["event_id"], *sealed, index)


def reseal_event(row: Any, keyring: Keyring) -> tuple[str, str, str | None]:
    payload = orjson.loads(row["payload"])
    stored = payload["data"]["patient_details"]
    context = payload_context(row["event_id"])
    patient = orjson.loads(keyring.decrypt(stored, context)) if isinstance(stored, str) else stored
    payload["data"]["patient_details"] = keyring.encrypt(orjson.dumps(patient).decode(), context)
    email = patient.get("email") if isinstance(patient, dict) else None
    index = keyring.email_index(email) if isinstance(email, str) and email else None
    return (row["event_id"], orjson.dumps(payload).decode(), index)


async def pending(conn: asyncpg.Connection, keyring: Keyring) -> dict[str, int]:
    prefix = keyring.current_prefix
    return {
        "gfe_visits": await conn.fetchval(COUNT_VISITS, prefix),
        "spakinect_events": await conn.fetchval(COUNT_EVENTS, prefix),
    }


TABLES = ("gfe_visits", "spakinect_events")
MAX_PASSES = 20  # a pass re-seals what the previous ones skipped while the writer held it


@dataclass
class Rotation:
    """Rows re-sealed per table, and the ids of rows that would not open (never re-sealed)."""

    done: dict[str, int] = field(default_factory=lambda: {t: 0 for t in TABLES})
    unreadable: dict[str, set[str]] = field(default_factory=lambda: {t: set() for t in TABLES})


async def rotate(
    pool: asyncpg.Pool,
    keyring: Keyring,
    *,
    batch: int = 500,
    progress: Callable[[int], object] = lambda _n: None,
) -> Rotation:
    """Re-seal pending rows; ``progress(n)`` per batch read."""
    result = Rotation()
    for _ in range(MAX_PASSES):
        before = sum(result.done.values())
        skipped = await _pass(pool, keyring, batch, progress, result)
        if not skipped or sum(result.done.values()) == before:
            break
    return result


async def _pass(
    pool: asyncpg.Pool,
    keyring: Keyring,
    batch: int,
    progress: Callable[[int], object],
    result: Rotation,
) -> bool:
    """One pass over both tables; True when rows may have been skipped (locked or short)."""
    prefix = keyring.current_prefix
    skipped = False
    for table, select, reseal, update, width in (
        ("gfe_visits", PENDING_VISITS, reseal_visit, RESEAL_VISITS, 7),
        ("spakinect_events", PENDING_EVENTS, reseal_event, RESEAL_EVENTS, 3),
    ):
        cursor = ""
        while True:
            async with pool.acquire() as conn, conn.transaction():
                # Shared with the writer, exclusive to a forget: a forget never misses a
                # row a batch is sealing (and indexing) at the same time.
                await conn.execute(SHARE_ERASURE_LOCK, ERASURE_LOCK)
                rows = await conn.fetch(select, prefix, cursor, batch)
                new = []
                for row in rows:
                    try:
                        new.append(reseal(row, keyring))
                    except PhiDecryptError:
                        result.unreadable[table].add(row[0])
                if new:
                    status = await conn.execute(
                        update, *[[n[i] for n in new] for i in range(width)]
                    )
                    result.done[table] += rows_changed(status)
                if rows:
                    cursor = rows[-1][0]
            progress(len(rows))
            if len(rows) < batch:
                break
        pending = await _count(pool, table, prefix)
        skipped = skipped or pending > len(result.unreadable[table])
    return skipped


async def _count(pool: asyncpg.Pool, table: str, prefix: str) -> int:
    count: int = await pool.fetchval(
        COUNT_VISITS if table == "gfe_visits" else COUNT_EVENTS, prefix
    )
    return count
