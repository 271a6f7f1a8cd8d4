"""How long the broker may hold a source fetch, chosen from the rate events arrive at.

A consumer that asks for any one byte gets every event in a fetch of its own
once it keeps up: at hundreds of events per second each stage then costs the
broker hundreds of fetch requests a second (the live path's main cost). Asking
the broker to gather a few milliseconds' worth first (Kafka's
``fetch.min.bytes``, bounded by ``fetch.max.wait.ms``) batches them — but a
fixed wait delays a lone event at quiet hours and makes an idle worker poll.

:class:`AdaptiveFetch` asks for ``wait_s`` worth of the recent byte rate, and
for one byte (deliver at once, wait long when there is nothing) once that is
less than a few events: quiet hours pay no latency and no polling, a busy
stage pays at most ``wait_s`` per fetch. Pure: the consumer
(:mod:`streams.faust_adapter`) feeds it bytes and ticks, and applies the shape.
"""

from __future__ import annotations

from dataclasses import dataclass, field

IDLE_WAIT_MS = 1500  # Faust's own: a fetch with nothing to return is held this long
WORTH_BATCHING = 4096  # below this many bytes per wait, deliver each event at once
MAX_MIN_BYTES = 1 << 20


@dataclass(frozen=True, slots=True)
class FetchShape:
    """Kafka's fetch.min.bytes and fetch.max.wait.ms for the next fetches."""

    min_bytes: int = 1
    max_wait_ms: int = IDLE_WAIT_MS


@dataclass
class AdaptiveFetch:
    """The fetch shape that gathers ``wait_s`` of the recent rate (0: never batch)."""

    wait_s: float
    window_s: float = 0.25
    rate: float = 0.0  # bytes per second, risen smoothly, fallen at once
    _bytes: int = 0
    _since: float | None = None
    shape: FetchShape = field(default_factory=FetchShape)

    def delivered(self, nbytes: int) -> None:
        self._bytes += nbytes

    def tick(self, now: float) -> FetchShape | None:
        """A new shape when the rate moved it, else None; call often (and when idle)."""
        if self._since is None:
            self._since = now
            return None
        elapsed = now - self._since
        if elapsed < self.window_s:
            return None
        current = self._bytes / elapsed
        self.rate = current if current < self.rate else (self.rate + current) / 2
        self._bytes, self._since = 0, now
        shape = self.for_rate(self.rate)
        if shape == self.shape:
            return None
        self.shape = shape
        return shape

    def for_rate(self, bytes_per_s: float) -> FetchShape:
        want = int(bytes_per_s * self.wait_s)
        if self.wait_s <= 0 or want < WORTH_BATCHING:
            return FetchShape()
        return FetchShape(min(want, MAX_MIN_BYTES), max(1, int(self.wait_s * 1000)))
