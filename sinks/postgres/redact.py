"""Erase patient fields in place: the retention sweep and ``phi forget`` share these statements.

Redacting keeps the row (ids, location, decisions, times stay for the
platform teams) and sets ``phi_redacted_at``; a row already redacted is left
alone, so every caller is idempotent. The sweep works in small batches, each
its own transaction, and skips rows another sweeper holds (several writer
replicas may sweep at once).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import asyncpg

from events.registry import phi_events
from spakinect_pipeline import audit
from spakinect_pipeline.phi.paths import Path


def phi_event_clause() -> str:
    """``event`` is one of the registry's patient-data event types, as SQL.

    The names are literals, not a parameter: the partial index
    ``spakinect_events_unredacted_idx`` (migration 0002) is defined on this
    predicate, and a parameter would hide it from a prepared statement's generic plan.
    """
    names = " OR ".join("event = '{}'".format(name.replace("'", "''")) for name in phi_events())
    return f"({names})" if names else "false"


PHI_EVENT = phi_event_clause()

REDACT_VISITS = """
UPDATE gfe_visits SET patient_name = NULL, patient_first_name = NULL, patient_last_name = NULL,
    patient_email = NULL, patient_email_index = NULL, phi_redacted_at = $2
WHERE gfe_id = ANY($1::text[]) AND phi_redacted_at IS NULL
"""

REDACT_EVENTS = """
UPDATE spakinect_events SET
    payload = CASE WHEN jsonb_typeof(payload -> 'data') = 'object'
                   THEN jsonb_set(payload, '{data,patient_details}', 'null'::jsonb)
                   ELSE payload END,
    patient_email_index = NULL, phi_redacted_at = $2
WHERE event_id = ANY($1::text[]) AND phi_redacted_at IS NULL
"""

# One PHI_EXTRA_PATHS value ($2) nulled, where present under an object (an absent path
# stays absent); run before REDACT_EVENTS, in its transaction.
REDACT_EXTRA = """
UPDATE spakinect_events SET payload = jsonb_set(payload, $2::text[], 'null'::jsonb, false)
WHERE event_id = ANY($1::text[]) AND phi_redacted_at IS NULL
  AND jsonb_typeof(payload #> trim_array($2::text[], 1)) = 'object'
  AND jsonb_typeof(payload #> $2::text[]) <> 'null'
"""

OLD_VISITS = """
SELECT gfe_id FROM gfe_visits
WHERE phi_redacted_at IS NULL AND completed_at < $1
ORDER BY completed_at LIMIT $2 FOR UPDATE SKIP LOCKED
"""

OLD_EVENTS = f"""
SELECT event_id FROM spakinect_events
WHERE phi_redacted_at IS NULL AND {PHI_EVENT} AND occurred_at < $1
ORDER BY occurred_at LIMIT $2 FOR UPDATE SKIP LOCKED
"""  # noqa: S608 - the registry's names only


SWEEP_ACTOR = "system:retention-sweep"
"""The audit actor of the writer's background sweep (``phi sweep`` records the OS user)."""


def rows_changed(status: str) -> int:
    """Rows changed, from asyncpg's command tag (``UPDATE 3``)."""
    return int(status.rsplit(" ", 1)[-1])


async def redact_visits(conn: asyncpg.Connection, gfe_ids: Sequence[str], now: datetime) -> int:
    return rows_changed(await conn.execute(REDACT_VISITS, list(gfe_ids), now))


async def redact_events(
    conn: asyncpg.Connection,
    event_ids: Sequence[str],
    now: datetime,
    extra_paths: Sequence[Path] = (),
) -> int:
    for path in extra_paths:
        await conn.execute(REDACT_EXTRA, list(event_ids), list(path))
    return rows_changed(await conn.execute(REDACT_EVENTS, list(event_ids), now))


async def sweep(
    pool: asyncpg.Pool,
    cutoff: datetime,
    now: datetime,
    batch: int = 500,
    *,
    extra_paths: Sequence[Path] = (),
    actor: str = SWEEP_ACTOR,
) -> dict[str, int]:
    """Redact every visit and visit event older than ``cutoff``; counts per table.

    Each batch records a ``phi.retention-sweep`` audit entry (its ids, the
    cutoff) in the transaction that redacts it: no row is redacted unaudited,
    and a sweep that finds nothing writes nothing.
    """
    done = {"gfe_visits": 0, "spakinect_events": 0}
    for table, select in (("gfe_visits", OLD_VISITS), ("spakinect_events", OLD_EVENTS)):
        while True:
            async with pool.acquire() as conn, conn.transaction():
                ids = [r[0] for r in await conn.fetch(select, cutoff, batch)]
                if ids:
                    await audit.record(
                        conn,
                        "phi.retention-sweep",
                        f"table:{table}",
                        actor=actor,
                        details={"before": cutoff.isoformat(), "ids": ids},
                    )
                    if table == "gfe_visits":
                        done[table] += await redact_visits(conn, ids, now)
                    else:
                        done[table] += await redact_events(conn, ids, now, extra_paths)
            if len(ids) < batch:
                break
    return done
