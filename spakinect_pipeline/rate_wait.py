"""How long to wait for more work to share a batch with, from the rate it arrives at.

Batching pays under load: one Postgres transaction or one produce request
for many events costs far less than one each. A fixed wait
(``STREAMS_BATCH_WITHIN_S``, ``INGRESS_LINGER_MS``) does that, but it also
holds a lone event at quiet hours for the whole wait, for nothing: no second
event is coming. :class:`RateWait` waits only when the recent rate would
bring at least ``worth`` more within the wait, and goes at once otherwise:
quiet hours pay no batching latency, busy hours keep their batches. Pure:
the sink stages' runner and the publisher feed it what they took and when.

``fill`` caps the wait at the time the rate takes to bring that many: a
publisher's linger only has to gather enough to amortise a produce request,
and past that a longer wait is latency, which is throughput for a sender
that waits for its answer (a closed loop of connections).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WORTH = 2.0  # wait only for at least this many more events
HALF_LIFE_S = 1.0  # how fast the rate estimate forgets


@dataclass
class RateWait:
    """The wait before the next batch: ``within_s`` when the recent rate fills it, else 0."""

    within_s: float
    fill: float | None = None  # None: wait the whole window when busy
    worth: float = WORTH
    half_life_s: float = HALF_LIFE_S
    _weight: float = 0.0  # events taken, each decayed by its age
    _at: float | None = None

    def took(self, events: int, now: float) -> None:
        """Count a batch of ``events`` taken at ``now`` (monotonic seconds)."""
        self._weight = self._decayed(now) + events
        self._at = now

    def rate(self, now: float) -> float:
        """Events per second, recently (an exponentially decayed count)."""
        return self._decayed(now) * math.log(2) / self.half_life_s

    def wait_s(self, now: float) -> float:
        rate = self.rate(now)
        if self.within_s <= 0 or rate * self.within_s < self.worth:
            return 0.0
        if self.fill is None:
            return self.within_s
        return min(self.within_s, self.fill / rate)

    def _decayed(self, now: float) -> float:
        if self._at is None:
            return 0.0
        age = max(0.0, now - self._at)
        return float(self._weight * 0.5 ** (age / self.half_life_s))
