"""Pure mapping from clean-topic records to the writer's rows (no I/O).

Within one batch only the newest applied event per entity becomes a state
row; the database guard (``WHERE stored < new``) handles the rest, so a batch
replayed after a crash changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from events.envelope import Disposition, Record
from events.registry import state_table

VISITS_TABLE, TREATMENTS_TABLE = "gfe_visits", "treatments"
"""The state tables this module builds rows for (an event type names its own: registry)."""

DECISIONS = {
    "requested_treatments": "requested",
    "approved_treatments": "approved",
    "conditionally_approved_treatments": "conditionally_approved",
    "deferred_treatments": "deferred",
}


def occurred_at(timestamp_ms: int) -> datetime:
    return datetime.fromtimestamp(timestamp_ms / 1000, tz=UTC)


@dataclass(frozen=True, slots=True)
class BatchRows:
    """Column arrays for each statement of one batch transaction.

    An event row's ``payload`` (position 7) is the envelope's own dict, parsed
    once by the decoder and never copied or mutated here: the erasure markers
    and the sealing (:mod:`sinks.postgres.protect`) read it as it is, and
    sealing serialises it once, so a payload is never parsed again.
    """

    events: list[tuple[Any, ...]]
    visits: list[tuple[Any, ...]]
    visit_treatments: list[tuple[str, str, str]]
    treatments: list[tuple[Any, ...]]
    not_applied: list[tuple[str, str]]


def visit_row(record: Record, at: datetime) -> tuple[Any, ...]:
    """A ``gfe_visits`` row (plaintext); ``at`` is the event's ``occurred_at``."""
    env = record.envelope
    data = env.payload["data"]
    patient = data.get("patient_details") or {}
    return (
        data["gfe_id"],
        data.get("location_id"),
        data.get("status"),
        data.get("pdf_link"),
        patient.get("name"),
        patient.get("first_name"),
        patient.get("last_name"),
        patient.get("email"),
        at,
        env.event_id,
    )


def visit_treatment_rows(record: Record) -> list[tuple[str, str, str]]:
    """One row per treatment name per decision (duplicates in a list collapse)."""
    data = record.envelope.payload["data"]
    rows: dict[tuple[str, str, str], None] = {}
    for field, decision in DECISIONS.items():
        for name in data.get(field) or []:
            rows[(data["gfe_id"], str(name), decision)] = None
    return list(rows)


def treatment_row(record: Record, at: datetime) -> tuple[Any, ...]:
    """A ``treatments`` row; ``at`` is the event's ``occurred_at``."""
    env = record.envelope
    data = env.payload["data"]
    action = data["action"]
    return (
        data["treatment_id"],
        data.get("treatment_name"),
        action,
        action == "deleted",
        at,
        env.event_id,
    )


Newest = dict[str, tuple[int, datetime, Record]]
"""Per entity id: the newest applied event's timestamp, ``occurred_at`` and record."""


def _keep_newest(newest: Newest, entity: str, timestamp: int, at: datetime, record: Record) -> None:
    current = newest.get(entity)
    if current is None or timestamp > current[0]:
        newest[entity] = (timestamp, at, record)


def batch_rows(records: Sequence[Record]) -> BatchRows:
    """Every row a batch writes; raises KeyError/ValueError for a malformed record.

    One pass over the batch: each envelope's timestamp, entity and instant are
    read once, for its event row and, if it is the newest applied event of its
    entity, for its state row.
    """
    events: list[tuple[Any, ...]] = []
    not_applied: list[tuple[str, str]] = []
    visits: Newest = {}
    treatments: Newest = {}
    newest: dict[str | None, Newest] = {VISITS_TABLE: visits, TREATMENTS_TABLE: treatments}
    for record in records:
        env = record.envelope
        payload = env.payload
        timestamp = int(payload["timestamp"])
        at = occurred_at(timestamp)
        entity = env.entity_id
        success = bool(payload.get("success"))
        disposition = env.disposition or Disposition.APPLY
        events.append(
            (env.event_id, env.event, entity, at, env.received_at, success, disposition.value,
             payload)
        )  # fmt: skip
        if disposition != Disposition.APPLY:
            not_applied.append((env.event_id, disposition.value))
        elif success and (state := newest.get(state_table(env.event))) is not None:
            _keep_newest(state, entity, timestamp, at, record)
    return BatchRows(
        events=events,
        visits=[visit_row(record, at) for _, at, record in visits.values()],
        visit_treatments=[row for _, _, r in visits.values() for row in visit_treatment_rows(r)],
        treatments=[treatment_row(record, at) for _, at, record in treatments.values()],
        not_applied=not_applied,
    )


def columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[tuple[Any, ...]]:
    """Transpose rows of ``width`` columns into per-column arrays for ``unnest`` parameters."""
    if not rows:
        return [() for _ in range(width)]
    transposed = list(zip(*rows, strict=True))
    if len(transposed) != width:
        raise ValueError(f"rows of {len(transposed)} columns where {width} are written")
    return transposed


def sources(records: Sequence[Record]) -> list[list[Any]]:
    """Topic, partition and offset columns of each record, in ``BatchRows.events`` order."""
    return [
        [r.source.topic for r in records],
        [r.source.partition for r in records],
        [r.source.offset for r in records],
    ]
