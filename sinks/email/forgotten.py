"""Never email a forgotten patient's visit: a sink wrapper that checks the erasure markers.

A forgotten visit can still reach the email stage (a raw replay, a DLQ
replay, a late duplicate, a clean-topic message older than the forget). Its
email would carry the patient's name (and, with patient notifications, go
to the patient's address), so it is skipped, counted as ``forgotten`` and
recorded as handled like a sent one: a later replay skips it again. When
Postgres cannot say, the send waits (a retryable error), it never guesses.

A sealed (version 2) visit is opened first (:mod:`sinks.sealed`): a destroyed
key means the patient was forgotten, and that visit is skipped the same way
without asking Postgres, so a forget holds while Postgres is down.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from events.envelope import Record
from sinks.base import Sink
from sinks.sealed import Opener, open_batch


class Markers(Protocol):
    """Where the erasure markers are (Postgres in production: ``ErasureMarkers``)."""

    async def forgotten(self, gfe_id: str | None, emails: Sequence[str]) -> bool: ...

    async def stop(self) -> None: ...


def subjects(record: Record) -> tuple[str | None, list[str]]:
    """The gfe_id and patient email of a visit record, as the markers are keyed."""
    data = record.envelope.payload.get("data") or {}
    patient = data.get("patient_details") if isinstance(data, dict) else None
    email = patient.get("email") if isinstance(patient, dict) else None
    gfe_id = data.get("gfe_id") if isinstance(data, dict) else None
    return (
        gfe_id if isinstance(gfe_id, str) else None,
        [email] if isinstance(email, str) and email else [],
    )


class SkipForgotten:
    """Wraps a sink: records of forgotten patients are dropped before it sees them."""

    def __init__(self, inner: Sink, markers: Markers, opener: Opener | None = None) -> None:
        self.inner = inner
        self.markers = markers
        self.opener = opener
        self.name = inner.name
        self.skipped = 0

    async def start(self) -> None:
        await self.inner.start()

    async def stop(self) -> None:
        await self.inner.stop()

    async def write(self, batch: Sequence[Record]) -> None:
        records = list(batch)
        if self.opener is not None:
            opened = await open_batch(self.opener, batch)
            records = [r for i, r in enumerate(opened.records) if i not in opened.forgotten]
        kept = [r for r in records if not await self.markers.forgotten(*subjects(r))]
        self.skipped += len(batch) - len(kept)
        if kept:
            await self.inner.write(kept)
