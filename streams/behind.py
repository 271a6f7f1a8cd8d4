"""How far behind a stage is in time: the age of its oldest unprocessed event, per partition.

Offsets say how many messages wait, not for how long: 10 000 messages are
seconds at full speed, while a sink down for hours can hide behind three. The
consumer notes each source message's Kafka timestamp (offset order, a deque
append) when it hands the message to the stage, and forgets it once its offset
is committed, so the head of a partition's deque is the oldest message not yet
done. Ages are computed only when metrics are scraped.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Collection, Hashable


class TimeBehind:
    """Per partition: the Kafka timestamps of messages handed over but not yet committed."""

    def __init__(self) -> None:
        self._pending: dict[Hashable, deque[tuple[int, float]]] = {}
        self._waiting_since: dict[Hashable, float] = {}

    def delivered(self, tp: Hashable, offset: int, timestamp: float) -> None:
        """Note a message handed to the stage (a repeat after a seek is noted once)."""
        pending = self._pending.get(tp)
        if pending is None:
            pending = self._pending[tp] = deque()
        if not pending or offset > pending[-1][0]:
            pending.append((offset, timestamp))
        elif offset < pending[0][0]:
            pending.appendleft((offset, timestamp))
        else:  # re-read from a hole: rare, and the deque stays in offset order
            at = bisect.bisect_left(pending, (offset,))
            if pending[at][0] != offset:
                pending.insert(at, (offset, timestamp))

    def committed(self, tp: Hashable, offset: int) -> None:
        """Everything below ``offset`` is done: forget it."""
        pending = self._pending.get(tp)
        while pending and pending[0][0] < offset:
            pending.popleft()

    def keep_only(self, tps: Collection[Hashable]) -> None:
        """After a rebalance: forget partitions no longer assigned."""
        for tp in [tp for tp in self._pending if tp not in tps]:
            del self._pending[tp]
        for tp in [tp for tp in self._waiting_since if tp not in tps]:
            del self._waiting_since[tp]

    def seconds(self, tp: Hashable, lag: int, committed: int | None, now: float) -> float:
        """Age of the partition's oldest unprocessed message; 0 when none waits.

        ``lag`` is the number of messages not yet committed. When some wait but
        none has been handed over yet (the fetch is stuck, or the worker just
        got the partition), the age counts from when that was first seen, so a
        stuck partition still shows a growing age.
        """
        if lag <= 0:
            self._waiting_since.pop(tp, None)
            return 0.0
        if committed is not None:
            self.committed(tp, committed)
        pending = self._pending.get(tp)
        if pending:
            self._waiting_since.pop(tp, None)
            return max(0.0, now - pending[0][1])
        return now - self._waiting_since.setdefault(tp, now)

    def __len__(self) -> int:
        return sum(len(pending) for pending in self._pending.values())
