"""Which partitions this worker owns now, and which batches may still write for them.

A rebalance can move a partition while a batch of it is in flight. Without a
fence that batch keeps going after the partition's new owner has recovered
the table and started: it sends an email the new owner sends again, writes a
changelog entry the new owner never reads, or a row older than the new
owner's. The fence closes that, in two steps (docs/commit-protocol.md):

1. A revoke first *drains*: no new batch of the revoked partitions starts,
   and the revoke waits (up to a bound) for the batches in flight to finish,
   ack and commit. In Kafka's eager rebalance the new owner is given the
   partition only after this worker's revoke returns, so nothing overlaps.
2. Then the revoked partitions' epochs end. A batch still running past the
   bound holds a :class:`Lease` on epochs that no longer exist: its next
   :meth:`Lease.check` (before every table write, email, row and publish)
   raises :class:`Revoked`, and the batch writes nothing more and acks nothing.

Pure asyncio: no Faust here. The consumer (:mod:`streams.faust_adapter`) calls
:meth:`Fence.assign` and :meth:`Fence.revoke`; the runner takes a lease per batch.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Collection, Hashable, Iterable
from dataclasses import dataclass, field


class Revoked(Exception):
    """The batch's partition was revoked while it ran: it must write nothing more."""


@dataclass(eq=False)
class Lease:
    """A batch's claim on the epochs of its partitions when it started."""

    fence: Fence
    epochs: dict[Hashable, int | None]

    @property
    def valid(self) -> bool:
        """Every partition of the batch is still owned in the epoch the batch began in."""
        current = self.fence.epochs
        return all(e is not None and current.get(tp) == e for tp, e in self.epochs.items())

    def owns(self, tp: Hashable) -> bool:
        epoch = self.epochs.get(tp)
        return epoch is not None and self.fence.epochs.get(tp) == epoch

    def check(self) -> None:
        """Raise :class:`Revoked` if any partition of the batch moved since it began."""
        if not self.valid:
            lost = sorted(str(tp) for tp in self.epochs if not self.owns(tp))
            raise Revoked(f"partition revoked while its batch ran: {', '.join(lost)}")


@dataclass
class Fence:
    """Epochs of owned partitions, batches in flight, and when the stage last took work."""

    epochs: dict[Hashable, int] = field(default_factory=dict)
    _draining: set[Hashable] = field(default_factory=set)
    _active: set[Lease] = field(default_factory=set)
    _changed: asyncio.Event | None = None
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    last_taken: float = field(default_factory=time.monotonic)

    def assign(self, tps: Iterable[Hashable]) -> None:
        """``tps`` are (again) this worker's: each starts a new epoch."""
        for tp in tps:
            self.epochs[tp] = next(self._counter)

    def lease(self, tps: Iterable[Hashable]) -> Lease:
        """Claim ``tps`` for one batch; a partition draining or not owned is not claimed."""
        self.last_taken = time.monotonic()
        epochs = {tp: None if tp in self._draining else self.epochs.get(tp) for tp in tps}
        lease = Lease(self, epochs)
        self._active.add(lease)
        return lease

    def release(self, lease: Lease) -> None:
        self._active.discard(lease)
        if self._changed is not None:
            self._changed.set()

    @property
    def busy(self) -> bool:
        """A batch is in flight."""
        return bool(self._active)

    def in_flight(self, tps: Collection[Hashable]) -> list[Lease]:
        return [lease for lease in self._active if any(tp in tps for tp in lease.epochs)]

    async def revoke(self, tps: Collection[Hashable], bound_s: float) -> list[Lease]:
        """Drain ``tps`` (wait up to ``bound_s`` for their batches), then end their epochs.

        Returns the batches still in flight when the bound passed (they are fenced).
        """
        tps = set(tps)
        self._draining |= tps
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + bound_s
            while self.in_flight(tps):
                left = deadline - loop.time()
                if left <= 0:
                    break
                self._changed = changed = asyncio.Event()
                try:
                    await asyncio.wait_for(changed.wait(), left)
                except TimeoutError:
                    break
            return self.in_flight(tps)
        finally:
            for tp in tps:
                self.epochs.pop(tp, None)
            self._draining -= tps
