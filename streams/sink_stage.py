"""Run a sink as a Faust stage: read clean topics (and the sink's retry topic) in batches.

Batches are gathered from unacked events (see :mod:`streams.acking`) and
acked only after the sink committed them or they were dead-lettered, so a
worker stopped mid-batch repeats the batch instead of losing it.
"""

from __future__ import annotations

import logging
from typing import Any, cast

import faust
from opentelemetry.trace import Tracer

from events.envelope import EnvelopeInvalid, decode_envelope
from events.messages import SourceMessage
from events.topics import Topics
from sinks.base import Record, Sink
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.publisher import KafkaPublisher
from streams.acking import ack, next_batch, pumped
from streams.delivery import Backoff, DeliveryStats, deliver
from streams.dlq import DeadLetters
from streams.faust_app import raw_topic
from streams.metrics import StageMetrics
from streams.settings import StreamsSettings
from streams.source import source_of
from streams.spans import Spans, batch_spans

log = logging.getLogger(__name__)


def decode_records(sources: list[SourceMessage], dlq_bad: list[tuple[Any, str]]) -> list[Record]:
    """Decode messages into records; undecodable ones are collected for the DLQ."""
    records = []
    for source in sources:
        try:
            records.append(Record(decode_envelope(source.value), source))
        except EnvelopeInvalid as exc:
            dlq_bad.append((source, str(exc)))
    return records


class BatchSinkStage:
    """A consumer group that writes clean-topic batches to one sink."""

    def __init__(
        self,
        app: faust.App,
        sink: Sink,
        streams: StreamsSettings,
        kafka: KafkaSettings,
        tracer: Tracer | None = None,
    ) -> None:
        self.app = app
        self.tracer = tracer
        self.sink = sink
        self.streams = streams
        topics = Topics(kafka.topic_prefix)
        self.publisher = KafkaPublisher(kafka, client_id=streams.group_id(sink.name))
        self.dlq = DeadLetters(self.publisher, topics.dlq, sink.name)
        self.stats = DeliveryStats()
        self.metrics = StageMetrics(app, sink.name, self._counts, self.stats.gauges)
        self.backoff = Backoff(maximum=streams.retry_max_backoff_s)
        source = raw_topic(app, topics.visits, topics.treatments, topics.retry(sink.name))
        app.agent(source, name=f"{sink.name}-sink")(self._agent)
        app.on_before_shutdown.connect(cast(Any, self._on_shutdown))  # mode types signals loosely

    async def _on_shutdown(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        await self.sink.stop()
        await self.publisher.stop()

    def _counts(self) -> dict[str, float]:
        return {**self.stats.counts(), "dlq_messages": self.dlq.sent}

    async def _dead_letter(self, record: Record, exc: BaseException, attempts: int) -> None:
        await self.dlq.send(
            record.source, error=str(exc), error_type=type(exc).__name__, attempts=attempts
        )

    async def _agent(self, stream: Any) -> None:
        await self.sink.start()
        async with pumped(stream, self.streams.batch_max) as queue:
            while True:
                events = await next_batch(
                    queue, self.streams.batch_max, self.streams.batch_within_s
                )
                sources = [source_of(event) for event in events]
                with batch_spans(self.tracer, self.sink.name, sources, done="written") as spans:
                    await self._write(sources, spans)
                # Only now, after the commit (or the DLQ's ack), do the offsets move.
                await ack(stream, *events)

    async def _write(self, sources: list[SourceMessage], spans: Spans) -> None:
        """Deliver a batch to the sink: written or dead-lettered, each event's span says which."""
        bad: list[tuple[Any, str]] = []
        records = decode_records(sources, bad)
        for source, error in bad:
            await self.dlq.send(source, error=error, error_type="EnvelopeInvalid")
            spans.outcome(source, "dead_lettered")

        async def dead_letter(record: Record, exc: BaseException, attempts: int) -> None:
            await self._dead_letter(record, exc, attempts)
            spans.outcome(record.source, "dead_lettered")

        self.metrics.batch_size.observe(len(records))
        with self.metrics.write_seconds.time():
            await deliver(self.sink, records, dead_letter, self.backoff, self.stats)
