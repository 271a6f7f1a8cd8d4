"""The dedupe stage's decisions, pure: duplicate or not, which disposition, what expires.

State per partition (kept in Faust tables, changelog-backed):

* ``seen[event_id] = {"at": ms first seen, "ok": success, "p": partition}``
* ``newest[entity_id] = {"ts": newest successful timestamp, "at": ms, "p": partition}``

Both are bounded by the dedupe window: :class:`ExpiryIndex` says which keys
are older than the window, so the stage can tombstone them itself (windowed
tables do not expire keys restored from the changelog, faust-streaming #385).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from events.envelope import Disposition, Envelope


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


def plan_batch(
    envelopes: Sequence[Envelope],
    seen: Callable[[str], dict[str, Any] | None],
    newest_ts: Callable[[str], int | None],
) -> list[Verdict]:
    """Verdicts for a batch in order, as if each event had been recorded before the next.

    ``seen``/``newest_ts`` read the tables; what earlier events of the same
    batch would have written is overlaid, so a duplicate or an older event
    inside one batch is caught like one in separate batches.
    """
    pending_seen: dict[str, dict[str, Any]] = {}
    pending_newest: dict[str, int] = {}
    out: list[Verdict] = []
    for envelope in envelopes:
        event_id, entity_id = envelope.event_id, envelope.entity_id
        entry = pending_seen[event_id] if event_id in pending_seen else seen(event_id)
        newest = pending_newest[entity_id] if entity_id in pending_newest else newest_ts(entity_id)
        decision = verdict(entry, newest, envelope)
        out.append(decision)
        if isinstance(decision, Drop):
            continue
        pending_seen[event_id] = {"ok": envelope.success}
        if decision is Disposition.APPLY and envelope.success:
            pending_newest[entity_id] = envelope.timestamp
    return out


def seen_entry(envelope: Envelope, partition: int, now_ms: int) -> dict[str, Any]:
    return {"at": now_ms, "ok": envelope.success, "p": partition}


def newest_entry(envelope: Envelope, partition: int, now_ms: int) -> dict[str, Any] | None:
    """The entity's new newest timestamp, or None when this event does not advance it."""
    if not envelope.success:
        return None
    return {"ts": envelope.timestamp, "at": now_ms, "p": partition}


class ExpiryIndex:
    """Which (table, key) entries of each partition are older than the window.

    A min-heap per partition of ``(at, table, key)`` plus each entry's current
    ``at``: an entry rewritten later is pushed again and its older heap item
    is skipped, so the stage can tombstone what :meth:`expired` returns
    without reading the table first, and ``len()`` is the entries held.
    """

    def __init__(self, window_ms: int) -> None:
        self.window_ms = window_ms
        self._heaps: dict[int, list[tuple[int, str, str]]] = {}
        self._current: dict[tuple[str, str], int] = {}

    def add(self, partition: int, at: int, table: str, key: str) -> None:
        heapq.heappush(self._heaps.setdefault(partition, []), (at, table, key))
        self._current[(table, key)] = at

    def clear(self) -> None:
        self._heaps.clear()
        self._current.clear()

    def __len__(self) -> int:
        return len(self._current)

    def expired(self, partition: int, now_ms: int, limit: int = 1000) -> list[tuple[int, str, str]]:
        """Pop up to ``limit`` current entries of ``partition`` older than the window."""
        heap = self._heaps.get(partition)
        out: list[tuple[int, str, str]] = []
        cutoff = now_ms - self.window_ms
        while heap and heap[0][0] < cutoff and len(out) < limit:
            at, table, key = heapq.heappop(heap)
            if self._current.get((table, key)) == at:
                del self._current[(table, key)]
                out.append((at, table, key))
        return out
