"""The Postgres sink: one transaction per batch, idempotent, newer-only.

Events always land in ``spakinect_events`` (``ON CONFLICT DO NOTHING``);
visits and treatments are applied only when newer than the stored row,
whatever the disposition says, and a visit's treatment rows are replaced
only when the visit itself was applied. Patient fields are sealed or redacted
on the way in (:mod:`sinks.postgres.protect`); with ``PHI_RETENTION`` set, a
background sweep redacts rows that aged past it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg

from events.envelope import Record
from sinks.base import InvalidBatch, RetryableError, SinkError
from sinks.postgres.migrate import migrate
from sinks.postgres.protect import BatchHashes, Protection, markers, protect, with_patient
from sinks.postgres.redact import SWEEP_ACTOR, sweep
from sinks.postgres.rows import batch_rows, columns, sources
from sinks.sealed import Opener, open_batch
from spakinect_pipeline.phi.crypto import Keyring
from spakinect_pipeline.phi.paths import Path
from spakinect_pipeline.postgres_problems import classify as connection_problem

log = logging.getLogger(__name__)

INSERT_EVENTS = """
INSERT INTO spakinect_events
    (event_id, event, entity_id, occurred_at, received_at, success, disposition, payload,
     patient_email_index, phi_redacted_at, clean_topic, clean_partition, clean_offset)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::timestamptz[], $5::timestamptz[],
                     $6::bool[], $7::text[], $8::jsonb[], $9::text[], $10::timestamptz[],
                     $11::text[], $12::int[], $13::bigint[])
ON CONFLICT (event_id) DO NOTHING
"""

UPSERT_VISITS = """
INSERT INTO gfe_visits AS v
    (gfe_id, location_id, status, pdf_link, patient_name, patient_first_name,
     patient_last_name, patient_email, completed_at, event_id, patient_email_index,
     phi_redacted_at)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::timestamptz[], $10::text[], $11::text[],
                     $12::timestamptz[])
ON CONFLICT (gfe_id) DO UPDATE SET
    location_id = EXCLUDED.location_id, status = EXCLUDED.status,
    pdf_link = EXCLUDED.pdf_link, patient_name = EXCLUDED.patient_name,
    patient_first_name = EXCLUDED.patient_first_name,
    patient_last_name = EXCLUDED.patient_last_name, patient_email = EXCLUDED.patient_email,
    completed_at = EXCLUDED.completed_at, event_id = EXCLUDED.event_id,
    patient_email_index = EXCLUDED.patient_email_index,
    phi_redacted_at = EXCLUDED.phi_redacted_at, updated_at = clock_timestamp()
WHERE v.completed_at < EXCLUDED.completed_at
RETURNING gfe_id, xmax <> 0 AS replaced
"""

DELETE_VISIT_TREATMENTS = "DELETE FROM gfe_visit_treatments WHERE gfe_id = ANY($1::text[])"

INSERT_VISIT_TREATMENTS = """
INSERT INTO gfe_visit_treatments (gfe_id, treatment_name, decision)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
ON CONFLICT DO NOTHING
"""

UPSERT_TREATMENTS = """
INSERT INTO treatments AS t
    (treatment_id, treatment_name, last_action, deleted, last_event_at, event_id)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bool[], $5::timestamptz[],
                     $6::text[])
ON CONFLICT (treatment_id) DO UPDATE SET
    treatment_name = COALESCE(EXCLUDED.treatment_name, t.treatment_name),
    last_action = EXCLUDED.last_action, deleted = EXCLUDED.deleted,
    last_event_at = EXCLUDED.last_event_at, event_id = EXCLUDED.event_id,
    updated_at = clock_timestamp()
WHERE t.last_event_at < EXCLUDED.last_event_at
"""

ERASED = "SELECT marker FROM phi_erasures WHERE marker = ANY($1::text[])"

# Writers share this advisory lock, ``phi forget`` takes it alone: a batch that read
# no erasure marker cannot commit a forgotten patient's fields after the forget did.
ERASURE_LOCK = 0x5A4B_E7A5
# Also: every statement of the batch takes its arrays, so plan each execution for them (a
# plan cached while a table was small would keep treating a batch as a large share of it).
# Set per transaction, not as a connection parameter, which poolers such as PgBouncer refuse.
SHARE_ERASURE_LOCK = (
    "SELECT pg_advisory_xact_lock_shared($1), "
    "set_config('plan_cache_mode', 'force_custom_plan', true)"
)


def utcnow() -> datetime:
    return datetime.now(UTC)


# SQLSTATE classes that mean "this data can never be written" (22 data, 23 integrity).
INVALID_CLASSES = ("22", "23")


# What the pure row code raises for a record it cannot turn into rows.
MALFORMED = (KeyError, ValueError, TypeError, AttributeError)


def malformed(exc: BaseException) -> InvalidBatch:
    return InvalidBatch(f"malformed record ({type(exc).__name__})")


def classify(exc: BaseException) -> RetryableError | InvalidBatch:
    """Name the error by what the caller does; the text carries no values.

    A connection problem (TLS, authentication, address) says what is wrong
    and which part of ``POSTGRES_DSN`` to check
    (:func:`spakinect_pipeline.postgres_problems.classify`).
    """
    problem = connection_problem(exc)
    if problem is not None:
        return RetryableError(str(problem))
    if isinstance(exc, asyncpg.PostgresError):
        code = getattr(exc, "sqlstate", None) or "?????"
        text = f"{type(exc).__name__} (SQLSTATE {code})"
        if code[:2] in INVALID_CLASSES:
            return InvalidBatch(text)
        return RetryableError(text)
    return RetryableError(type(exc).__name__)


def forgotten_visit(record: Record) -> Record:
    """A record whose key was destroyed, shaped so the erasure-marker path redacts it.

    Its sealed paths came back null; an empty ``patient_details`` (not null) makes
    :func:`~sinks.postgres.protect.protect_event` store it redacted (``phi_redacted_at``
    set) like any visit of a forgotten patient, once its gfe marker is in the batch's
    erased set.
    """
    payload = record.envelope.payload
    data = payload.get("data")
    if not isinstance(data, dict) or data.get("patient_details") is not None:
        return record
    envelope = record.envelope.model_copy(update={"payload": with_patient(payload, {})})
    return Record(envelope, record.source)


class PostgresSink:
    """Writes clean-topic records to the contract's tables."""

    name = "postgres"

    def __init__(
        self,
        dsn: str,
        *,
        keyring: Keyring,
        retention_s: float | None = None,
        sweep_interval_s: float = 3600.0,
        sweep_batch: int = 500,
        clock: Callable[[], datetime] = utcnow,
        pool_size: int = 2,
        command_timeout: float = 30.0,
        migrate_on_start: bool = True,
        migrations_dsn: str | None = None,
        extra_paths: tuple[Path, ...] = (),
        opener: Opener | None = None,
    ) -> None:
        self.extra_paths = extra_paths  # PHI_EXTRA_PATHS
        self.opener = opener  # opens version-2 envelopes (sealed per patient on Kafka)
        self._dsn = dsn
        self._migrations_dsn = migrations_dsn or dsn  # the tables' owner, when given
        self.keyring = keyring
        self.retention = timedelta(seconds=retention_s) if retention_s else None
        self.sweep_interval_s = sweep_interval_s
        self.sweep_batch = sweep_batch
        self.clock = clock
        self.redacted: Counter[tuple[str, str]] = Counter()  # (table, reason) -> rows
        self._sweeper: asyncio.Task[None] | None = None
        self._migrate_on_start = migrate_on_start
        self._pool_size = pool_size
        self._command_timeout = command_timeout
        self._pool: asyncpg.Pool | None = None
        self._pool_lock = asyncio.Lock()  # the writer and the readiness probe may both connect

    async def start(self) -> None:
        if self.opener is not None:
            await self.opener.start()  # ConfigError: the master key does not open the key topic
        try:
            await self._ensure_pool()
        except RetryableError as exc:
            log.warning("postgres: cannot connect at start-up: %s; will keep trying", exc)
        if self.retention is not None and self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="phi-retention")

    def cutoff(self) -> datetime | None:
        """Visits that completed before this are past ``PHI_RETENTION``."""
        return self.clock() - self.retention if self.retention is not None else None

    async def sweep_once(self, actor: str = SWEEP_ACTOR) -> dict[str, int]:
        """Redact what aged past ``PHI_RETENTION`` now (audited as ``actor``); counts per table."""
        cutoff = self.cutoff()
        if cutoff is None:
            return {}
        pool = await self._ensure_pool()
        try:
            done = await sweep(
                pool,
                cutoff,
                self.clock(),
                self.sweep_batch,
                extra_paths=self.extra_paths,
                actor=actor,
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise classify(exc) from None
        for table, count in done.items():
            self.redacted[(table, "retention")] += count
        if any(done.values()):
            log.info("retention sweep redacted patient fields", extra={"rows": done})
        return done

    async def _sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except SinkError as exc:  # retryable or not, the next sweep tries again
                log.warning(
                    "retention sweep failed (%s); next try in %.0fs", exc, self.sweep_interval_s
                )
            await asyncio.sleep(self.sweep_interval_s)

    async def _ensure_pool(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._pool_lock:
            if self._pool is None:
                try:
                    if self._migrate_on_start:
                        await migrate(self._migrations_dsn)
                    self._pool = await asyncpg.create_pool(
                        self._dsn,
                        min_size=1,
                        max_size=self._pool_size,
                        command_timeout=self._command_timeout,
                        timeout=10,
                    )
                except (
                    OSError,
                    asyncpg.PostgresError,
                    asyncpg.InterfaceError,
                    TimeoutError,
                ) as exc:
                    raise classify(exc) from None
            return self._pool

    async def ping(self, timeout: float) -> None:
        """``SELECT 1`` on the pool's spare connection (the writer uses one at a time)."""
        pool = await self._ensure_pool()
        try:
            async with pool.acquire(timeout=timeout) as conn:
                await conn.fetchval("SELECT 1", timeout=timeout)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise classify(exc) from None

    async def stop(self) -> None:
        if self.opener is not None:
            await self.opener.stop()
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        if self._pool is not None:
            await asyncio.wait_for(self._pool.close(), timeout=10)
            self._pool = None

    async def write(self, batch: Sequence[Record]) -> None:
        forgotten: set[str] = set()  # visits whose key on Kafka was destroyed: stored redacted
        opened = batch
        if self.opener is not None:
            result = await open_batch(self.opener, batch)
            opened = [
                forgotten_visit(r) if i in result.forgotten else r
                for i, r in enumerate(result.records)
            ]
            forgotten = {opened[i].envelope.entity_id for i in result.forgotten}
        try:
            rows = batch_rows(opened)
            hashes = BatchHashes(self.keyring)
            candidates = markers(rows, hashes)
            gone = {hashes.gfe_marker(gfe_id) for gfe_id in forgotten if gfe_id}
        except MALFORMED as exc:
            raise malformed(exc) from None
        pool = await self._ensure_pool()
        try:
            async with pool.acquire() as conn, conn.transaction():
                await conn.execute(SHARE_ERASURE_LOCK, ERASURE_LOCK)
                erased = await conn.fetch(ERASED, list(candidates)) if candidates else []
                now = self.clock()
                erased_markers = frozenset(r[0] for r in erased) | gone
                protection = Protection(
                    self.keyring, now, erased_markers, self.cutoff(), hashes, self.extra_paths
                )
                try:  # serialises each payload: one JSON cannot hold rolls the batch back
                    rows = protect(rows, protection)
                except MALFORMED as exc:
                    raise malformed(exc) from None
                await conn.execute(INSERT_EVENTS, *columns(rows.events, 10), *sources(batch))
                if rows.visits:
                    applied = await conn.fetch(UPSERT_VISITS, *columns(rows.visits, 12))
                    applied_ids = {r["gfe_id"] for r in applied}
                    # A visit seen before has treatments to replace; a new one has none.
                    replaced = [r["gfe_id"] for r in applied if r["replaced"]]
                    if replaced:
                        await conn.execute(DELETE_VISIT_TREATMENTS, replaced)
                    if applied_ids:
                        keep = [r for r in rows.visit_treatments if r[0] in applied_ids]
                        if keep:
                            await conn.execute(INSERT_VISIT_TREATMENTS, *columns(keep, 3))
                if rows.treatments:
                    await conn.execute(UPSERT_TREATMENTS, *columns(rows.treatments, 6))
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            raise classify(exc) from None
        self.redacted[("spakinect_events", "written_redacted")] += sum(
            1 for r in rows.events if r[9]
        )
        self.redacted[("gfe_visits", "written_redacted")] += sum(1 for r in rows.visits if r[11])
        for event_id, disposition in rows.not_applied:
            log.info(
                "event recorded, not applied",
                extra={"event_id": event_id, "disposition": disposition},
            )
