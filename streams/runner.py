"""The one stage runner: wires a :class:`~streams.handler.Handler` to Faust and Kafka.

For every stage it owns the subscription (source topics read as bytes:
decoding and its errors are ours, not Faust's), batching from unacked events
(:mod:`streams.acking`), the handler call (:func:`streams.handler.process`),
the stage's publisher and dead letters, metrics and probes, and shutdown.
A batch is acked only after its work is done (written, published or
dead-lettered), so a worker stopped mid-batch repeats the batch instead of
losing it; the consumer commits only unbroken runs of acked offsets
(:mod:`streams.faust_adapter`). Each batch holds a lease on its partitions
(:mod:`streams.fence`): a revoke or a stop waits for it, and past that bound
it writes nothing more. docs/commit-protocol.md is the whole protocol.

Per-event cost lives in three places: :func:`streams.handler.process`
(decode, spans), the handler's ``handle`` (one call per batch) and
:meth:`StageRunner._agent` (pump, ack per event).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import faust
from opentelemetry.trace import Tracer
from prometheus_client.registry import Collector

from events.topics import Topics
from spakinect_pipeline.config import ConfigError, KafkaSettings
from spakinect_pipeline.publisher import KafkaPublisher, Publisher
from spakinect_pipeline.rate_wait import RateWait
from streams.acking import ack, next_batch, pumped
from streams.dlq import DeadLetters, DlqLimit, DlqLimitExceeded
from streams.fence import Fence, Lease, Revoked
from streams.handler import Handler, Tools, process
from streams.metrics import StageMetrics
from streams.probes import Check, add_probes
from streams.settings import StreamsSettings
from streams.source import source_of

log = logging.getLogger(__name__)


@dataclass
class StageEnv:
    """What a stage's builder gets: its Faust app (for tables) and the shared settings."""

    app: faust.App
    streams: StreamsSettings
    kafka: KafkaSettings
    topics: Topics


@dataclass
class StageParts:
    """What a stage's builder returns: its handler and what the runner wires around it."""

    handler: Handler
    subscribe: Sequence[str]  # every topic the stage reads
    ready_on: Sequence[str]  # the topics whose metadata /readyz asks Kafka for
    checks: Mapping[str, Check] = field(default_factory=dict)  # the sink's own readiness
    collectors: Sequence[Collector] = ()  # more metrics on the stage's registry


def subscribe(app: faust.App, *names: str) -> Any:
    """Source topics read as raw bytes (key and value); :func:`process` decodes them."""
    return app.topic(
        *names, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw"
    )


def partition_of(event: Any) -> tuple[str, int]:
    """The (topic, partition) of a Faust event: equal to, and hashed as, Faust's ``TP``."""
    return event.message.topic, event.message.partition


class StageRunner:
    """Runs one stage's handler as a Faust agent, with everything around it."""

    def __init__(
        self,
        env: StageEnv,
        parts: StageParts,
        tracer: Tracer | None = None,
        publisher: Publisher | None = None,
    ) -> None:
        self.app = env.app
        self.handler = handler = parts.handler
        self.publisher = publisher or KafkaPublisher(
            env.kafka,
            client_id=env.streams.group_id(handler.name),
            linger_ms=handler.shape.linger_ms,
        )
        limit = DlqLimit(env.streams.dlq_limit)
        self.dlq = DeadLetters(self.publisher, env.topics.dlq, handler.name, limit)
        self.fence: Fence = getattr(env.app, "fence", None) or Fence()
        self._batch: asyncio.Task[None] | None = None
        self._stopping = False
        self.drain_bound_s = float(getattr(env.app, "drain_bound_s", 10.0))
        self.tools = Tools(handler.name, self.publisher, self.dlq, tracer)
        self.metrics = StageMetrics(
            env.app,
            handler.name,
            lambda: {**handler.counts(), "dlq_messages": self.dlq.sent},
            handler.gauges,
        )
        for collector in parts.collectors:
            self.metrics.registry.register(collector)
        self.probes = add_probes(env.app, self.publisher, parts.ready_on, parts.checks)
        env.app.agent(subscribe(env.app, *parts.subscribe), name=handler.name)(self._agent)
        # mode types its signals loosely
        env.app.on_before_shutdown.connect(cast(Any, self._on_shutdown))
        on_drain = getattr(env.app, "on_drain", None)
        if on_drain is not None:
            on_drain(self.drain)

    async def _on_shutdown(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        await self.handler.stop()
        await self.publisher.stop()

    async def drain(self, bound_s: float) -> None:
        """Stop taking batches, let the one in flight finish (up to ``bound_s``), commit."""
        self._stopping = True
        batch = self._batch
        if batch is not None and not batch.done():
            await asyncio.wait({batch}, timeout=bound_s)
            if not batch.done():
                log.warning(
                    "%s: the batch in flight did not finish within %.0fs of the stop; it is "
                    "left unacked and repeated by the partitions' next owner",
                    self.handler.name,
                    bound_s,
                )
        try:
            await asyncio.wait_for(self.app.consumer.commit(), bound_s)
        except Exception as exc:  # noqa: BLE001 - the next owner repeats what was not committed
            log.warning("%s: commit at stop failed (%s)", self.handler.name, type(exc).__name__)

    def _lease(self, events: list[Any]) -> tuple[Lease, list[Any]]:
        """A lease on the partitions of ``events``, and the events of partitions owned now."""
        lease = self.fence.lease({partition_of(event) for event in events})
        if lease.valid:
            return lease, events
        self.fence.release(lease)
        owned = [e for e in events if lease.owns(partition_of(e))]
        log.info(
            "%s: %d fetched event(s) of partitions not owned now are left to their owner",
            self.handler.name,
            len(events) - len(owned),
        )
        return self.fence.lease({partition_of(event) for event in owned}), owned

    async def _run(self, stream: Any, lease: Lease, events: list[Any]) -> None:
        """One batch: the handler's work, then (still owning its partitions) the acks.

        The lease is released only after the acks, so a revoke that waited for it
        commits them.
        """
        self.tools.guard = lease.check
        try:
            try:
                await process(self.handler, [source_of(e) for e in events], self.tools)
                lease.check()
            except Revoked as exc:
                log.info("%s: batch of %d event(s) fenced: %s", self.handler.name, len(events), exc)
                return
            except DlqLimitExceeded as exc:
                log.error("%s: %s", self.handler.name, exc)
                await self.app.crash(exc)
                raise
            # Only now, after the work (or the DLQ's ack), do the offsets move.
            await ack(stream, *events)
        finally:
            self.fence.release(lease)

    async def _agent(self, stream: Any) -> None:
        shape = self.handler.shape
        try:
            await self.handler.start()
        except ConfigError as exc:  # found only once it could look (a wrong master key)
            log.error("%s: %s", self.handler.name, exc)
            await self.app.crash(exc)
            raise
        loop = asyncio.get_running_loop()
        wait = RateWait(shape.within_s)  # no wait for more at quiet hours
        async with pumped(stream, shape.batch_max) as queue:
            while True:
                events = await next_batch(queue, shape.batch_max, wait.wait_s(loop.time()))
                wait.took(len(events), loop.time())
                if self._stopping:
                    await asyncio.Event().wait()  # stopping: take nothing more, ack nothing
                lease, events = self._lease(events)
                if not events:
                    self.fence.release(lease)
                    continue
                self._batch = batch = asyncio.ensure_future(self._run(stream, lease, events))
                try:
                    await asyncio.shield(batch)
                except asyncio.CancelledError:
                    # Cancelled from outside (a stop): the batch may finish within the bound.
                    await asyncio.wait({batch}, timeout=self.drain_bound_s)
                    raise
