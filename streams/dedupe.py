"""The dedupe stage: drop duplicates, set the disposition, publish to the clean topics.

Order of work per event: publish to the clean topic, await its ack, then
record it as seen. A crash in between repeats the event (harmless: sinks are
idempotent), never loses it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
from typing import Any, cast

import faust
from opentelemetry.trace import Tracer

from events.envelope import Disposition, Envelope, EnvelopeInvalid, decode_envelope, reencode
from events.messages import SourceMessage
from events.topics import Topics, headers
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.publisher import KafkaPublisher, Message, PublishFailed
from streams.acking import ack, next_batch, pumped
from streams.dedupe_logic import Drop, Entry, ExpiryIndex, entity_key, plan_batch
from streams.dlq import DeadLetters
from streams.faust_app import json_table, raw_topic
from streams.metrics import StageMetrics
from streams.settings import StreamsSettings
from streams.source import source_of
from streams.spans import Spans, batch_spans

log = logging.getLogger(__name__)
SWEEP_LIMIT = 200
BATCH_MAX = 500


class DedupeStage:
    """Wires the pure decisions of :mod:`streams.dedupe_logic` to Faust tables and Kafka."""

    def __init__(
        self,
        app: faust.App,
        streams: StreamsSettings,
        kafka: KafkaSettings,
        tracer: Tracer | None = None,
    ) -> None:
        self.app = app
        self.tracer = tracer
        self.topics = Topics(kafka.topic_prefix)
        self.publisher = KafkaPublisher(kafka, client_id=streams.group_id("dedupe"), linger_ms=2)
        self.dlq = DeadLetters(self.publisher, self.topics.dlq, "dedupe")
        # One entry per entity; the first release kept "seen" and "newest" tables, whose
        # changelogs are simply no longer read (their state only caught duplicates early).
        self.entities = json_table(app, "entities", kafka.partitions)
        self.window_ms = int(streams.dedupe_window * 1000)
        self.index = ExpiryIndex(self.window_ms)
        self.index_stale = True
        self.counts: dict[str, float] = {
            "published_apply": 0,
            "published_stale": 0,
            "published_unsuccessful": 0,
            "duplicates": 0,
            "expired": 0,
        }
        self.metrics = StageMetrics(
            app,
            "dedupe",
            lambda: {**self.counts, "dlq_messages": self.dlq.sent},
            self._gauges,
        )
        source = raw_topic(app, self.topics.visit_completed, self.topics.treatment_updated)
        app.agent(source, name="dedupe")(self._agent)
        app.on_partitions_assigned.connect(
            cast(Any, self._on_assigned)
        )  # mode types signals loosely
        app.on_before_shutdown.connect(cast(Any, self._on_shutdown))  # mode types signals loosely

    def _gauges(self) -> dict[str, float]:
        return {
            "expiry_index_entries": len(self.index),
            "expiry_overdue_seconds": self.index.overdue_ms() / 1000,
            "dedupe_window_seconds": self.window_ms / 1000,
        }

    async def _on_assigned(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        self.index_stale = True

    async def _on_shutdown(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        await self.publisher.stop()

    async def _agent(self, stream: Any) -> None:
        # Natural batching: whatever has arrived while the previous batch was published.
        async with pumped(stream, BATCH_MAX) as queue:
            while True:
                events = await next_batch(queue, BATCH_MAX, within=0)
                try:
                    await self.handle_batch(stream, events)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("dedupe batch failed; retrying its events one by one")
                    for event in events:
                        await self._handle_alone(stream, event)
                await ack(stream, *events)

    async def _handle_alone(self, stream: Any, event: Any) -> None:
        try:
            await self.handle_batch(stream, [event])
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("dedupe failed for a message; dead-lettering it")
            await self.dlq.send(
                source_of(event),
                error="unexpected error in the dedupe stage",
                error_type=type(exc).__name__,
            )

    async def handle_batch(self, stream: Any, events: list[Any]) -> None:
        """Decide a batch, publish what passes in one round trip, then record it as seen."""
        sources = [source_of(event) for event in events]
        with batch_spans(self.tracer, "dedupe", sources) as spans:
            await self._handle_batch(stream, events, sources, spans)

    async def _handle_batch(
        self, stream: Any, events: list[Any], sources: list[SourceMessage], spans: Spans
    ) -> None:
        now_ms = int(time.time() * 1000)
        decoded: list[tuple[Any, SourceMessage, Envelope]] = []
        for event, source in zip(events, sources, strict=True):
            try:
                decoded.append((event, source, decode_envelope(source.value)))
            except EnvelopeInvalid as exc:
                await self.dlq.send(source, error=str(exc), error_type="EnvelopeInvalid")
                spans.outcome(source, "dead_lettered")
        # Faust's RocksDB store reads and writes the partition of the current event.
        swept: set[int] = set()
        entries: dict[str, Entry | None] = {}
        owner: dict[str, Any] = {}
        for event, source, envelope in decoded:
            stream._set_current_event(event)
            if source.partition not in swept:
                # At least as many as this batch can add, so the sweep keeps up.
                self._sweep(source.partition, now_ms, SWEEP_LIMIT + len(events))
                swept.add(source.partition)
            key = entity_key(envelope)
            if key not in entries:
                entries[key] = self.entities.get(key)
                owner[key] = event
        plan = plan_batch(
            [(envelope, source.partition) for _, source, envelope in decoded],
            entries.__getitem__,
            now_ms=now_ms,
            window_ms=self.window_ms,
        )
        passed = []
        for (_, source, envelope), decision in zip(decoded, plan.verdicts, strict=True):
            if isinstance(decision, Drop):
                self.counts["duplicates"] += 1
                spans.outcome(source, "duplicate")
                log.debug("duplicate dropped", extra={"event_id": envelope.event_id})
            else:
                passed.append((source, envelope, decision))
        await self._publish_clean(passed, spans)
        for key, entry in plan.entries.items():
            stream._set_current_event(owner[key])
            self.entities[key] = entry
            self.index.add(entry["p"], entry["at"], key)

    async def _publish_clean(
        self, decided: list[tuple[SourceMessage, Envelope, Disposition]], spans: Spans
    ) -> None:
        """Publish to the clean topics until acked; Kafka down pauses the stage, loses nothing.

        Each clean message carries the trace context of its event's dedupe span.
        """
        if not decided:
            return
        messages = [
            self._clean_message(envelope, disposition, spans.headers(source))
            for source, envelope, disposition in decided
        ]
        delay = 0.2
        while True:
            try:
                await self.publisher.publish_many(messages, timeout=10)
                break
            except PublishFailed as exc:
                log.warning("clean topic write failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
        for source, envelope, disposition in decided:
            self.counts[f"published_{disposition.value}"] += 1
            spans.outcome(source, "published", disposition.value)
            log.info(
                "event published",
                extra={"event_id": envelope.event_id, "disposition": disposition.value},
            )

    def _clean_message(
        self, envelope: Envelope, disposition: Disposition, trace: Sequence[tuple[str, bytes]]
    ) -> Message:
        topic = self.topics.clean_for(envelope.event)
        if topic is None:
            raise ValueError(f"no clean topic for event type {envelope.event!r}")
        message_headers = headers(
            event=envelope.event, event_id=envelope.event_id, disposition=disposition.value
        )
        message_headers.extend(trace)
        return Message(
            topic, reencode(envelope, disposition), envelope.entity_id.encode(), message_headers
        )

    def _rebuild_index(self) -> None:
        """After a rebalance or restart, index what the table holds (restored entries too)."""
        self.index.clear()
        for key, value in self.entities.items():
            if isinstance(value, dict) and "at" in value and "p" in value:
                self.index.add(int(value["p"]), int(value["at"]), key)
        self.index_stale = False
        log.info("dedupe expiry index rebuilt", extra={"entries": len(self.index)})

    def _sweep(self, partition: int, now_ms: int, limit: int) -> None:
        """Tombstone this partition's entries older than the window."""
        if self.index_stale:
            self._rebuild_index()
        for key in self.index.expired(partition, now_ms, limit):
            # The index holds each key's current write, so no read is needed to confirm it.
            del self.entities[key]
            self.counts["expired"] += 1
