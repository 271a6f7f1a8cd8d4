"""Erasure on request (``phi forget``) and the markers that keep a forgotten patient forgotten.

A forget redacts, in one transaction, every visit row and every stored
visit event of the patient (found by gfe_id, or by the email's blind index),
records erasure markers (keyed hashes of the gfe_ids and of the email, never
the values) and an audit entry. The writer looks the markers up for every
batch (:mod:`sinks.postgres.writer`) and the email stage before every send,
so a replay, a DLQ replay or a late duplicate never brings the data back.
The forget holds the erasure lock alone while writers share it, so no batch
can slip between its redaction and its markers.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg

from events.registry import phi_events
from sinks.base import RetryableError
from sinks.postgres.redact import redact_events, redact_visits, rows_changed
from sinks.postgres.writer import ERASURE_LOCK
from spakinect_pipeline import audit
from spakinect_pipeline.phi.crypto import VERSION, BlindIndex, normalize_email
from spakinect_pipeline.phi.paths import Path

# Rows written before encryption existed hold the email in plain text and no blind index
# until `phi rotate-key` seals them: a forget must find those too ($2: the normalised email).
VISITS_BY_EMAIL = f"""
SELECT gfe_id FROM gfe_visits
WHERE patient_email_index = $1
   OR (patient_email_index IS NULL AND phi_redacted_at IS NULL
       AND NOT starts_with(patient_email, '{VERSION}:') AND lower(btrim(patient_email)) = $2)
"""  # noqa: S608 - a constant, not input
EVENTS_BY_EMAIL = """
SELECT DISTINCT entity_id FROM spakinect_events
WHERE event = ANY($3::text[])
  AND (patient_email_index = $1
       OR (patient_email_index IS NULL AND phi_redacted_at IS NULL
           AND jsonb_typeof(payload #> '{data,patient_details}') = 'object'
           AND lower(btrim(payload #>> '{data,patient_details,email}')) = $2))
"""
OPEN_VISITS = """
SELECT gfe_id FROM gfe_visits WHERE gfe_id = ANY($1::text[]) AND phi_redacted_at IS NULL
"""
OPEN_EVENTS = """
SELECT event_id FROM spakinect_events
WHERE event = ANY($2::text[]) AND entity_id = ANY($1::text[]) AND phi_redacted_at IS NULL
"""
MARK = """
INSERT INTO phi_erasures (marker, kind) SELECT * FROM unnest($1::text[], $2::text[])
ON CONFLICT (marker) DO NOTHING
"""
ANY_MARKER = "SELECT 1 FROM phi_erasures WHERE marker = ANY($1::text[]) LIMIT 1"


@dataclass
class ForgetResult:
    """What a forget found and did (ids only); ``dry_run`` means nothing was changed."""

    target: str
    gfe_ids: list[str]
    visits: list[str] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    new_markers: int = 0
    dry_run: bool = False


def forget_target(index: BlindIndex, gfe_id: str | None, email: str | None) -> str:
    """The audit target: the gfe_id and/or the email's blind index, never the email."""
    parts = [f"gfe_id:{gfe_id}"] if gfe_id else []
    if email:
        parts.append(f"email-index:{index.email_index(email)}")
    return " ".join(parts)


async def forget(
    conn: asyncpg.Connection,
    index: BlindIndex,
    *,
    gfe_id: str | None,
    email: str | None,
    now: datetime,
    reason: str | None = None,
    actor: str | None = None,
    dry_run: bool = False,
    extra_paths: Sequence[Path] = (),
) -> ForgetResult:
    """Redact the patient everywhere in Postgres and mark them; idempotent."""
    if not gfe_id and not email:
        raise ValueError("a gfe_id or an email is needed")
    result = ForgetResult(forget_target(index, gfe_id, email), [], dry_run=dry_run)
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", ERASURE_LOCK)
        gfe_ids = {gfe_id} if gfe_id else set()
        markers: list[tuple[str, str]] = []
        if email:
            found = index.email_index(email)
            markers.append((found, "email"))
            plain = normalize_email(email).lower()
            gfe_ids |= {r[0] for r in await conn.fetch(VISITS_BY_EMAIL, found, plain)}
            gfe_ids |= {r[0] for r in await conn.fetch(EVENTS_BY_EMAIL, found, plain, phi_events())}
        result.gfe_ids = sorted(gfe_ids)
        markers += [(index.gfe_marker(g), "gfe_id") for g in result.gfe_ids]
        result.visits = [r[0] for r in await conn.fetch(OPEN_VISITS, result.gfe_ids)]
        result.events = [r[0] for r in await conn.fetch(OPEN_EVENTS, result.gfe_ids, phi_events())]
        await audit.record(
            conn,
            "phi.forget",
            result.target,
            actor=actor,
            reason=reason,
            details={
                "dry_run": dry_run,
                "gfe_ids": result.gfe_ids,
                "visits": len(result.visits),
                "events": len(result.events),
            },
        )
        if not dry_run:
            await redact_visits(conn, result.visits, now)
            await redact_events(conn, result.events, now, extra_paths)
            status = await conn.execute(
                MARK, [m for m, _ in markers], [kind for _, kind in markers]
            )
            result.new_markers = rows_changed(status)
    return result


class ErasureMarkers:
    """Asks Postgres whether a visit's patient was forgotten (for stages that don't write it)."""

    def __init__(self, dsn: str, index: BlindIndex, timeout_s: float = 10.0) -> None:
        self.dsn = dsn
        self.index = index
        self.timeout_s = timeout_s
        self._pool: asyncpg.Pool | None = None

    async def forgotten(self, gfe_id: str | None, emails: Sequence[str]) -> bool:
        """True when a marker matches; RetryableError when Postgres cannot say."""
        candidates = [self.index.email_index(e) for e in emails if e]
        if gfe_id:
            candidates.append(self.index.gfe_marker(gfe_id))
        if not candidates:
            return False
        try:
            if self._pool is None:
                self._pool = await asyncpg.create_pool(
                    self.dsn, min_size=1, max_size=1, timeout=self.timeout_s
                )
            hit = await self._pool.fetchval(ANY_MARKER, candidates, timeout=self.timeout_s)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise RetryableError(f"erasure markers unreadable ({type(exc).__name__})") from None
        return hit is not None

    async def stop(self) -> None:
        if self._pool is not None:
            await asyncio.wait_for(self._pool.close(), timeout=10)
            self._pool = None
