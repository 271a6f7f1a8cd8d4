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

import orjson

from events.envelope import Disposition
from events.registry import TREATMENT_UPDATED, VISIT_COMPLETED
from sinks.base import Record

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
    """Column arrays for each statement of one batch transaction."""

    events: list[tuple[Any, ...]]
    visits: list[tuple[Any, ...]]
    visit_treatments: list[tuple[str, str, str]]
    treatments: list[tuple[Any, ...]]
    not_applied: list[tuple[str, str]]


def event_row(record: Record) -> tuple[Any, ...]:
    env = record.envelope
    return (
        env.event_id,
        env.event,
        env.entity_id,
        occurred_at(env.timestamp),
        env.received_at,
        env.success,
        (env.disposition or Disposition.APPLY).value,
        orjson.dumps(env.payload).decode(),
    )


def _newest_applied(records: Sequence[Record], event: str) -> list[Record]:
    newest: dict[str, Record] = {}
    for record in records:
        env = record.envelope
        if env.event != event or env.disposition not in (None, Disposition.APPLY):
            continue
        if not env.success:
            continue
        current = newest.get(env.entity_id)
        if current is None or env.timestamp > current.envelope.timestamp:
            newest[env.entity_id] = record
    return list(newest.values())


def visit_row(record: Record) -> tuple[Any, ...]:
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
        occurred_at(env.timestamp),
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


def treatment_row(record: Record) -> tuple[Any, ...]:
    env = record.envelope
    data = env.payload["data"]
    action = data["action"]
    return (
        data["treatment_id"],
        data.get("treatment_name"),
        action,
        action == "deleted",
        occurred_at(env.timestamp),
        env.event_id,
    )


def batch_rows(records: Sequence[Record]) -> BatchRows:
    """Every row a batch writes; raises KeyError/ValueError for a malformed record."""
    visits = _newest_applied(records, VISIT_COMPLETED)
    treatments = _newest_applied(records, TREATMENT_UPDATED)
    return BatchRows(
        events=[event_row(r) for r in records],
        visits=[visit_row(r) for r in visits],
        visit_treatments=[row for r in visits for row in visit_treatment_rows(r)],
        treatments=[treatment_row(r) for r in treatments],
        not_applied=[
            (r.envelope.event_id, r.envelope.disposition.value)
            for r in records
            if r.envelope.disposition not in (None, Disposition.APPLY)
        ],
    )


def columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    """Transpose rows into per-column lists for ``unnest`` parameters."""
    return [[row[i] for row in rows] for i in range(width)]


def sources(records: Sequence[Record]) -> list[list[Any]]:
    """Topic, partition and offset columns of each record, in ``BatchRows.events`` order."""
    return [
        [r.source.topic for r in records],
        [r.source.partition for r in records],
        [r.source.offset for r in records],
    ]
