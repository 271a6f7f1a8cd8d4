"""The one way this project writes to Kafka: idempotent, ``acks=all``, within a budget.

aiokafka defaults to ``acks=1`` without idempotence, so both are set explicitly.
Its idempotent producer can stay broken after a broker outage
(OutOfOrderSequenceNumber and friends); the publisher then recreates the
producer instead of needing a process restart. Start-up never fails because
Kafka is down: the producer is (re)created on demand, and callers get
:class:`PublishFailed` within their timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError

from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.kafka_problems import classify, underlying_error
from spakinect_pipeline.rate_wait import RateWait

log = logging.getLogger(__name__)

Headers = Sequence[tuple[str, bytes]]
# A linger ends once the recent rate has brought this many: a produce request's fixed cost
# is then shared 8 ways, and above ~1,600 publishes/s a full linger only adds latency.
# Ingress bench, 32 connections closed loop, same run: 3,419 -> 5,007 req/s, p50 8.8 ->
# 5.5 ms, broker CPU per request 0.028 -> 0.034 ms; no change below 1,600/s.
LINGER_FILL = 8
StartProducer = Callable[[], Awaitable[AIOKafkaProducer]]


@dataclass(frozen=True, slots=True)
class Message:
    topic: str
    value: bytes | None  # None: a tombstone (compacted topics)
    key: bytes | None
    headers: Headers = ()
    partition: int | None = None  # None: the producer's partitioner picks it from the key


@dataclass(frozen=True, slots=True)
class Written:
    """Where Kafka stored an acked message."""

    topic: str
    partition: int
    offset: int


class PublishFailed(Exception):
    """Kafka did not acknowledge the write in time; the caller answers "retry later"."""


class Publisher(Protocol):
    """Writes messages durably or raises :class:`PublishFailed`.

    The ingress and the stages take one as a parameter, so their logic runs
    against :class:`KafkaPublisher` in production and an in-memory publisher
    in unit tests.
    """

    last_metadata_ok: float | None

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None,
        headers: Headers = (),
        timeout: float,
    ) -> None: ...

    async def publish_many(
        self, messages: Sequence[Message], *, timeout: float
    ) -> Sequence[Written]: ...

    async def refresh_metadata(self, topics: Sequence[str], timeout: float = 5.0) -> bool: ...


def _resolve(tick: asyncio.Future[None]) -> None:
    if not tick.done():
        tick.set_result(None)


def _retrieve_failure(start: asyncio.Task[AIOKafkaProducer]) -> None:
    """Mark a failed start as seen: its callers may all have given up and got PublishFailed."""
    if not start.cancelled() and (exc := start.exception()) is not None:
        log.debug("kafka producer did not start (%s)", type(exc).__name__)


def _refusal(exc: BaseException) -> str:
    """Why a write failed: the operator's reading of a wrong setting, else the error's type."""
    problem = classify(exc)
    if problem.settings_wrong or isinstance(exc, KafkaConnectionError):
        return str(problem)
    return f"Kafka refused the write ({type(exc).__name__})"


class KafkaPublisher:
    """An idempotent ``acks=all`` producer that heals itself after broker outages.

    A call's ``timeout`` bounds all of it: waiting for a producer to start
    (bootstrap, metadata, InitProducerId), the sends, the acks. Error handling
    after that never waits (dropping a broken producer is synchronous and its
    close runs in the background), so a caller gets its answer within its own
    budget whatever Kafka does. One start is shared by every caller; it has its
    own bound, so a start stuck on a cluster without a leader is dropped and the
    next caller begins a fresh one.

    ``linger_ms`` is adaptive (:mod:`spakinect_pipeline.rate_wait`): a lone
    :meth:`publish` goes at once; while the recent rate brings others within
    ``linger_ms``, callers wait for one shared tick and are enqueued together,
    so they share a produce request; the tick is shorter when the rate brings
    :data:`LINGER_FILL` sooner. aiokafka's own linger stays 0: it would
    hold every message, even the only one. (A producer with no linger still
    batches what arrives while a request to the broker is in flight.)
    """

    def __init__(
        self,
        kafka: KafkaSettings,
        *,
        client_id: str,
        linger_ms: int = 5,
        max_batch_size: int = 256 * 1024,
        request_timeout_ms: int = 10_000,
        start_producer: StartProducer | None = None,
    ) -> None:
        self._kafka = kafka
        self._options: dict[str, Any] = {
            **kafka.client_options(),
            "client_id": client_id,
            "acks": "all",
            "enable_idempotence": True,
            "linger_ms": 0,  # ours is adaptive: see publish()
            "max_batch_size": max_batch_size,
            "request_timeout_ms": request_timeout_ms,
            "retry_backoff_ms": 100,
        }
        self._start_producer = start_producer or self._new_producer
        self._start_timeout_s = request_timeout_ms / 1000
        self._producer: AIOKafkaProducer | None = None
        self._starting: asyncio.Task[AIOKafkaProducer] | None = None
        self._closing: set[asyncio.Task[None]] = set()
        self._linger = RateWait(linger_ms / 1000, fill=LINGER_FILL)
        self._tick: asyncio.Future[None] | None = None
        self.last_metadata_ok: float | None = None

    async def start(self) -> None:
        """Try to connect now; failure is not fatal (publishes retry the connection)."""
        try:
            await asyncio.wait_for(self._ensure_producer(), timeout=5)
        except (TimeoutError, KafkaError, OSError) as exc:
            log.warning("cannot connect at start-up, will keep trying: %s", classify(exc))

    async def _ensure_producer(self) -> AIOKafkaProducer:
        """The current producer, or the shared start's result; only the caller's bound applies."""
        if self._producer is not None:
            return self._producer
        if self._starting is None or self._starting.done():
            self._starting = asyncio.create_task(self._start())
            self._starting.add_done_callback(_retrieve_failure)
        # Shielded: a caller's timeout must not cancel a start other callers wait on.
        return await asyncio.shield(self._starting)

    async def _start(self) -> AIOKafkaProducer:
        async with asyncio.timeout(self._start_timeout_s):
            producer = await self._start_producer()
        self._producer = producer  # set here, so a start whose callers gave up still counts
        return producer

    async def _new_producer(self) -> AIOKafkaProducer:
        producer = AIOKafkaProducer(**self._options)
        try:
            await producer.start()
        except BaseException as exc:
            self._close_later(producer)
            # aiokafka says "Unable to bootstrap" for a wrong password or CA too: find out which.
            cause = await underlying_error(exc, self._kafka)
            if cause is not exc:
                raise cause from exc
            raise
        return producer

    async def publish(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None,
        headers: Headers = (),
        timeout: float,
    ) -> None:
        """Write one message and wait for the leader and its in-sync replicas to ack it."""
        loop = asyncio.get_running_loop()
        began = loop.time()
        linger = self._linger.wait_s(began)
        self._linger.took(1, began)
        if linger > 0:
            await self._shared_tick(loop, min(linger, timeout))
        budget = timeout - (loop.time() - began)
        await self.publish_many([Message(topic, value, key, headers)], timeout=max(budget, 0.001))

    async def _shared_tick(self, loop: asyncio.AbstractEventLoop, wait: float) -> None:
        """Wait for the tick every caller of this linger window waits for (started by the first).

        The callers resume one after the other in the same turn of the loop and each
        enqueues its message without yielding, so the producer's sender, woken by the
        first, runs only after the last: one request for all of them.
        """
        tick = self._tick
        if tick is None or tick.done():
            tick = self._tick = loop.create_future()
            loop.call_later(wait, _resolve, tick)
        await asyncio.shield(tick)  # a caller's cancellation must not end the others' wait

    async def publish_many(
        self, messages: Sequence[Message], *, timeout: float
    ) -> Sequence[Written]:
        """Write messages in order and wait for every ack: one round trip for a batch.

        Enqueued one after the other, so messages with the same key keep their
        order; any failure fails the whole call (the caller retries all of it).
        Returns where each message was stored, in order.
        """
        producer: AIOKafkaProducer | None = None
        try:
            async with asyncio.timeout(timeout):
                producer = await self._ensure_producer()
                acks = [
                    await producer.send(
                        m.topic, m.value, key=m.key, headers=list(m.headers), partition=m.partition
                    )
                    for m in messages
                ]
                results = await asyncio.gather(*acks, return_exceptions=True)
        except TimeoutError as exc:
            raise PublishFailed(f"no ack from Kafka within {timeout:g}s") from exc
        except (KafkaError, OSError) as exc:
            self._discard(producer, exc)
            raise PublishFailed(_refusal(exc)) from exc
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            self._discard(producer, failures[0])
            raise PublishFailed(
                f"Kafka refused {len(failures)} of {len(messages)} write(s) "
                f"({type(failures[0]).__name__})"
            )
        return [Written(r.topic, r.partition, r.offset) for r in cast(list[Any], results)]

    def _discard(self, producer: AIOKafkaProducer | None, cause: BaseException) -> None:
        """Drop ``producer`` if still current: its idempotent state may be broken.

        Synchronous, so no caller waits past its budget for it; the next
        publish starts a new producer. A producer another caller has already
        replaced is left alone, so a burst of failures costs one restart.
        """
        if producer is None or producer is not self._producer:
            return
        self._producer = None
        log.warning("recreating the Kafka producer after %s", type(cause).__name__)
        self._close_later(producer)

    def _close_later(self, producer: AIOKafkaProducer) -> None:
        task = asyncio.create_task(self._stop_quietly(producer, self._start_timeout_s))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _stop_quietly(producer: AIOKafkaProducer, timeout: float) -> None:
        try:
            await asyncio.wait_for(producer.stop(), timeout=timeout)
        except Exception:
            log.debug("producer did not stop cleanly", exc_info=True)

    async def refresh_metadata(self, topics: Sequence[str], timeout: float = 5.0) -> bool:
        """Fetch metadata; true (and remembered) when every topic has partitions."""
        try:
            async with asyncio.timeout(timeout):
                producer = await self._ensure_producer()
                await producer.client.force_metadata_update()
                for topic in topics:
                    if not producer.client.cluster.partitions_for_topic(topic):
                        return False
        except (TimeoutError, KafkaError, OSError):
            return False
        self.last_metadata_ok = time.monotonic()
        return True

    async def stop(self) -> None:
        """Flush what is buffered and close, within the request timeout even if Kafka hangs."""
        if self._starting is not None and not self._starting.done():
            self._starting.cancel()
            with contextlib.suppress(BaseException):
                await self._starting  # a start that fails schedules its producer's close
        producer, self._producer = self._producer, None
        if producer is not None:
            await self._stop_quietly(producer, self._start_timeout_s)
        await asyncio.gather(*self._closing)  # each bounded by _stop_quietly
