"""The dedupe stage's decisions, pure: duplicate or not, which disposition, what expires.

State per partition, one Faust table entry per entity (``"{event}:{entity_id}"``,
changelog-backed)::

    {PARTITION: partition, WRITTEN_AT: ms last written,
     NEWEST_APPLIED: newest applied timestamp or None,
     SEEN: {"<timestamp>": [ms first seen, success]}}

The persisted keys are one or two letters (``p``, ``at``, ``ts``, ``seen``):
every entry travels through the changelog, and entries already stored keep
being read, so code names them only through these constants.

The ``event_id`` is ``"{event}:{entity_id}:{timestamp}"``, so an entity's entry
holds every event id of it seen in the window: one table read and at most one
write per entity per batch, one tombstone when it expires. Seen timestamps
older than the window are pruned whenever the entry is written, and
:class:`ExpiryIndex` says which entries were last written before the window, so
the stage can tombstone them itself (windowed tables do not expire keys
restored from the changelog, faust-streaming #385).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from events.envelope import Disposition, Envelope

Entry = dict[str, Any]
PARTITION = "p"  # the source partition the entity lives on (its changelog partition)
WRITTEN_AT = "at"  # when the entry was last written, ms: its expiry counts from here
NEWEST_APPLIED = "ts"  # the newest applied event's vendor timestamp: older ones are stale
SEEN = "seen"  # vendor timestamp -> [ms first seen, success] of each event in the window


@dataclass(frozen=True, slots=True)
class Drop:
    """A duplicate of an event already published to the clean topic."""

    reason: str = "duplicate"


Verdict = Drop | Disposition


def verdict(seen: dict[str, Any] | None, newest_ts: int | None, envelope: Envelope) -> Verdict:
    """Decide what to do with one raw event.

    A ``success: true`` event is never dropped because of an earlier
    ``success: false`` with the same ``event_id``. Stale means older than the
    newest successful event seen for the entity.
    """
    if seen is not None and (seen.get("ok") or not envelope.success):
        return Drop()
    if not envelope.success:
        return Disposition.UNSUCCESSFUL
    if newest_ts is not None and envelope.timestamp < newest_ts:
        return Disposition.STALE
    return Disposition.APPLY


def entity_key(envelope: Envelope) -> str:
    """The table key of the entity an event is about (its event type included)."""
    return f"{envelope.event}:{envelope.entity_id}"


def seen_in(entry: Entry | None, envelope: Envelope) -> dict[str, Any] | None:
    """What the entry remembers of this very event (same ``event_id``), if anything."""
    item = (entry or {}).get(SEEN, {}).get(str(envelope.timestamp))
    return None if item is None else {"at": item[0], "ok": bool(item[1])}


def newest_in(entry: Entry | None) -> int | None:
    ts = (entry or {}).get(NEWEST_APPLIED)
    return None if ts is None else int(ts)


def with_event(
    entry: Entry | None,
    envelope: Envelope,
    decision: Disposition,
    *,
    partition: int,
    now_ms: int,
    window_ms: int,
) -> Entry:
    """The entity's entry after recording a passed event; seen items older than the window go."""
    cutoff = now_ms - window_ms
    kept = (entry or {}).get(SEEN, {}).items()
    seen = {ts: item for ts, item in kept if item[0] >= cutoff}
    seen[str(envelope.timestamp)] = [now_ms, envelope.success]
    newest = newest_in(entry)
    if decision is Disposition.APPLY:
        newest = envelope.timestamp if newest is None else max(newest, envelope.timestamp)
    return {PARTITION: partition, WRITTEN_AT: now_ms, NEWEST_APPLIED: newest, SEEN: seen}


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """A batch's verdicts in order, and each touched entity's entry once they are recorded."""

    verdicts: list[Verdict]
    entries: dict[str, Entry]


def plan_batch(
    events: Sequence[tuple[Envelope, int]],
    entry_of: Callable[[str], Entry | None],
    *,
    now_ms: int,
    window_ms: int,
) -> BatchPlan:
    """Decide ``(envelope, partition)`` pairs in order, as if each were recorded before the next.

    ``entry_of`` reads the table; what earlier events of the same batch would
    have written is overlaid, so a duplicate or an older event inside one batch
    is caught like one in separate batches.
    """
    pending: dict[str, Entry] = {}
    verdicts: list[Verdict] = []
    for envelope, partition in events:
        key = entity_key(envelope)
        entry = pending[key] if key in pending else entry_of(key)
        decision = verdict(seen_in(entry, envelope), newest_in(entry), envelope)
        verdicts.append(decision)
        if not isinstance(decision, Drop):
            pending[key] = with_event(
                entry, envelope, decision, partition=partition, now_ms=now_ms, window_ms=window_ms
            )
    return BatchPlan(verdicts, pending)


class ExpiryIndex:
    """Which entries of each partition were last written before the window.

    A min-heap per partition of ``(at, key)`` plus each key's current ``at``:
    a key rewritten later is pushed again and its older heap item is skipped,
    so the stage can tombstone what :meth:`expired` returns without reading
    the table first, and ``len()`` is the entries held. :meth:`overdue_ms`
    says whether the sweeps keep the state within the window.
    """

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._heaps: dict[int, list[tuple[int, str]]] = {}
        self._current: dict[str, int] = {}
        self._swept_at: dict[int, int] = {}

    def add(self, partition: int, at: int, key: str) -> None:
        heapq.heappush(self._heaps.setdefault(partition, []), (at, key))
        self._current[key] = at

    def clear(self) -> None:
        self._heaps.clear()
        self._current.clear()
        self._swept_at.clear()

    def __len__(self) -> int:
        return len(self._current)

    def expired(self, partition: int, now_ms: int, limit: int = 1000) -> list[str]:
        """Pop up to ``limit`` current keys of ``partition`` last written before the window."""
        return [key for _, key in self.take_expired(partition, now_ms, limit)]

    def take_expired(self, partition: int, now_ms: int, limit: int = 1000) -> list[tuple[int, str]]:
        """:meth:`expired` with each key's ``at``, so :meth:`restore` can put them back."""
        heap = self._heaps.get(partition)
        out: list[tuple[int, str]] = []
        cutoff = now_ms - self.window_ms
        self._swept_at[partition] = now_ms
        while heap and heap[0][0] < cutoff and len(out) < limit:
            at, key = heapq.heappop(heap)
            if self._current.get(key) == at:
                del self._current[key]
                out.append((at, key))
        return out

    def restore(self, partition: int, taken: list[tuple[int, str]]) -> None:
        """Index again what a sweep took but could not tombstone (keys written since stay)."""
        for at, key in taken:
            if key not in self._current:
                self.add(partition, at, key)

    def overdue_ms(self) -> int:
        """How long past the window the oldest entry a sweep should have deleted has lived.

        Judged per partition at its last sweep, not now: a partition that gets
        no events is not swept, and its entries past the window are expected
        until its next event. 0 while every sweep keeps up.
        """
        worst = 0
        for partition, swept_at in self._swept_at.items():
            heap = self._heaps.get(partition)
            while heap and self._current.get(heap[0][1]) != heap[0][0]:
                heapq.heappop(heap)  # a key rewritten since: its newer item is further down
            if heap:
                worst = max(worst, swept_at - self.window_ms - heap[0][0])
        return worst
