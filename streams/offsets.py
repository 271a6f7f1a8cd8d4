"""Which offset a partition may commit, and when a hole means a message was skipped.

Kafka commits are a promise: everything below the committed offset is done.
Our source topics are written without transactions or compaction, so their
offsets are contiguous: a partition may commit only through an unbroken run
of acked offsets that starts exactly at what is already committed. An acked
offset beyond an unacked one is a hole; one that outlives a grace period
means the consumer skipped a message, and the partition must be re-read from
the hole (re-deliveries are harmless: every stage is idempotent).
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Committable:
    offset: int | None  # the next offset to commit, None if nothing may be committed
    run: int  # how many acked offsets (from the start of the sorted list) it covers
    hole: int | None  # the first unacked offset that blocks the commit, if any


def committable(acked: list[int], floor: int | None) -> Committable:
    """The commit allowed by ``acked`` (sorted in place) above ``floor`` (committed/start)."""
    if not acked:
        return Committable(None, 0, None)
    acked.sort()
    if floor is not None and acked[0] > floor:
        return Committable(None, 0, floor)
    end = acked[0]
    run = 1
    for offset in acked[1:]:
        if offset > end + 1:
            break
        end = max(end, offset)
        run += 1
    return Committable(end + 1, run, None)


@dataclass
class HoleWatch:
    """Remembers since when each partition has been blocked by the same hole."""

    grace_s: float
    _since: dict[Hashable, tuple[int, float]] = field(default_factory=dict)

    def observe(self, tp: Hashable, hole: int | None, now: float) -> None:
        if hole is None:
            self._since.pop(tp, None)
            return
        previous = self._since.get(tp)
        if previous is None or previous[0] != hole:
            self._since[tp] = (hole, now)

    def due(self, now: float) -> list[tuple[Hashable, int]]:
        """Holes older than the grace period; each is reported once per grace period."""
        overdue = [
            (tp, hole) for tp, (hole, since) in self._since.items() if now - since >= self.grace_s
        ]
        for tp, hole in overdue:
            self._since[tp] = (hole, now)
        return overdue

    def forget(self, tp: Hashable) -> None:
        self._since.pop(tp, None)
