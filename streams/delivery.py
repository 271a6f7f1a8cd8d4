"""Deliver a batch to a sink: retry what is retryable, isolate and dead-letter what is invalid.

Pure control flow over the :class:`~sinks.base.Sink` protocol, so it unit-tests
with a fake sink; it never lets an exception escape except cancellation.
:class:`Backoff` is the one retry pace of every stage: sink writes, clean-topic
publishes and dead letters (:func:`until_acked`).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from events.envelope import Record
from sinks.base import InvalidBatch, RetryableError, Sink
from spakinect_pipeline.logs import error_facts
from spakinect_pipeline.publisher import PublishFailed

log = logging.getLogger(__name__)

DeadLetter = Callable[[Record, BaseException, int], Awaitable[None]]


@dataclass
class Backoff:
    """Capped exponential backoff, jittered: each delay drawn from the upper half of its ceiling."""

    initial: float = 0.2
    maximum: float = 30.0
    attempt: int = 0
    sleep: Callable[[float], Awaitable[None]] = field(default=asyncio.sleep)

    def next_delay(self) -> float:
        ceiling = min(self.maximum, self.initial * (2**self.attempt))
        self.attempt += 1
        return random.uniform(ceiling / 2, ceiling)

    async def wait(self) -> None:
        await self.sleep(self.next_delay())

    def reset(self) -> None:
        self.attempt = 0


async def until_acked(write: Callable[[], Awaitable[None]], backoff: Backoff, what: str) -> None:
    """Call ``write`` until Kafka acks it: Kafka down pauses the stage, loses nothing."""
    while True:
        try:
            await write()
        except PublishFailed as exc:
            delay = backoff.next_delay()
            log.warning("%s failed (%s); retrying in %.1fs", what, exc, delay)
            await backoff.sleep(delay)
            continue
        backoff.reset()
        return


@dataclass
class DeliveryStats:
    """What a sink stage did; read by its metrics at scrape time."""

    written: int = 0
    retries: int = 0
    dead_lettered: int = 0
    retrying: bool = False

    def counts(self) -> dict[str, float]:
        return {
            "written": self.written,
            "retries": self.retries,
            "dead_lettered": self.dead_lettered,
        }

    def gauges(self) -> dict[str, float]:
        return {"retrying": float(self.retrying)}


@dataclass(frozen=True, slots=True)
class Delivered:
    """What :func:`deliver` did with a batch: how many records were written, dead-lettered."""

    written: int = 0
    dead_lettered: int = 0

    def __add__(self, other: Delivered) -> Delivered:
        return Delivered(self.written + other.written, self.dead_lettered + other.dead_lettered)


def always_owned() -> None:
    """No fence: the batch's partitions never move (unit tests, tools)."""


async def deliver(
    sink: Sink,
    batch: Sequence[Record],
    dead_letter: DeadLetter,
    backoff: Backoff,
    stats: DeliveryStats,
    guard: Callable[[], None] = always_owned,
) -> Delivered:
    """Write ``batch``; return only when every record is written or dead-lettered.

    ``guard`` runs before every attempt: it raises (:class:`~streams.fence.Revoked`)
    once the batch's partition has moved to another worker, which then writes it.
    """
    if not batch:
        return Delivered()
    attempts = 0
    while True:
        attempts += 1
        guard()
        try:
            await sink.write(batch)
        except RetryableError as exc:
            stats.retries += 1
            delay = backoff.next_delay()
            log.warning("%s sink: retryable error (%s); retry in %.1fs", sink.name, exc, delay)
            stats.retrying = True
            await backoff.sleep(delay)
            continue
        except InvalidBatch as exc:
            backoff.reset()
            if len(batch) == 1:
                await dead_letter(batch[0], exc, attempts)
                stats.dead_lettered += 1
                return Delivered(dead_lettered=1)
            middle = len(batch) // 2
            first = await deliver(sink, batch[:middle], dead_letter, backoff, stats, guard)
            return first + await deliver(sink, batch[middle:], dead_letter, backoff, stats, guard)
        except Exception as exc:  # noqa: BLE001 - retried as retryable; class and stack logged
            stats.retries += 1
            log.error(  # class and stack only: a driver error's text can quote a value
                "%s sink: unclassified error; treating it as retryable",
                sink.name,
                extra=error_facts(exc),
            )
            stats.retrying = True
            await backoff.wait()
            continue
        backoff.reset()
        stats.retrying = False
        stats.written += len(batch)
        return Delivered(written=len(batch))
