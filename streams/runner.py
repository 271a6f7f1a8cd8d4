"""The one stage runner: wires a :class:`~streams.handler.Handler` to Faust and Kafka.

For every stage it owns the subscription (source topics read as bytes:
decoding and its errors are ours, not Faust's), batching from unacked events
(:mod:`streams.acking`), the handler call (:func:`streams.handler.process`),
the stage's publisher and dead letters, metrics and probes, and shutdown.
A batch is acked only after its work is done (written, published or
dead-lettered), so a worker stopped mid-batch repeats the batch instead of
losing it; the consumer commits only unbroken runs of acked offsets
(:mod:`streams.faust_consumer`).

Per-event cost lives in three places: :func:`streams.handler.process`
(decode, spans), the handler's ``handle`` (one call per batch) and
:meth:`StageRunner._agent` (pump, ack per event).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

import faust
from opentelemetry.trace import Tracer
from prometheus_client.registry import Collector

from events.messages import SourceMessage
from events.topics import Topics
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.publisher import KafkaPublisher, Publisher
from streams.acking import ack, next_batch, pumped
from streams.dlq import DeadLetters, DlqLimit, DlqLimitExceeded
from streams.handler import Handler, Tools, process
from streams.metrics import StageMetrics
from streams.probes import Check, add_probes
from streams.settings import StreamsSettings
from streams.source import Position, position, source_of

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
        self._events: dict[Position, Any] = {}
        self._stream: Any = None
        self.tools = Tools(handler.name, self.publisher, self.dlq, tracer, self._focus)
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

    async def _on_shutdown(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        await self.handler.stop()
        await self.publisher.stop()

    def _focus(self, source: SourceMessage) -> None:
        """Table reads and writes that follow go to ``source``'s partition.

        Faust picks a table's partition (store and changelog) from the stream's
        current event, and has no public way to set it for an event taken out of
        its iterator (our batches are). This is the one place that calls its
        private ``_set_current_event``; tests/integration/test_pipeline.py
        (``test_send_once_state_goes_to_the_changelog_partition_of_its_event``)
        pins it against a real Faust worker, so a Faust upgrade that changes it fails there.
        """
        self._stream._set_current_event(self._events[position(source)])

    async def _agent(self, stream: Any) -> None:
        shape = self.handler.shape
        await self.handler.start()
        self._stream = stream
        async with pumped(stream, shape.batch_max) as queue:
            while True:
                events = await next_batch(queue, shape.batch_max, shape.within_s)
                sources = [source_of(event) for event in events]
                self._events = {position(s): e for s, e in zip(sources, events, strict=True)}
                self._focus(sources[0])
                try:
                    await process(self.handler, sources, self.tools)
                except DlqLimitExceeded as exc:
                    log.error("%s: %s", self.handler.name, exc)
                    await self.app.crash(exc)
                    raise
                # Only now, after the work (or the DLQ's ack), do the offsets move.
                await ack(stream, *events)
