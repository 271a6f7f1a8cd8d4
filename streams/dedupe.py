"""The dedupe stage: drop duplicates, set the disposition, publish to the clean topics.

Order of work per event: publish to the clean topic, await its ack, then
record it as seen. A crash in between repeats the event (harmless: sinks are
idempotent), never loses it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, cast

import faust

from events.envelope import Disposition, EnvelopeInvalid, decode_envelope, reencode
from events.topics import Topics, headers
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.publisher import KafkaPublisher, PublishFailed
from streams.acking import ack, unacked_events
from streams.dedupe_logic import Drop, ExpiryIndex, newest_entry, seen_entry, verdict
from streams.dlq import DeadLetters, SourceMessage
from streams.faust_app import json_table, raw_topic
from streams.metrics import StageMetrics
from streams.settings import StreamsSettings
from streams.source import source_of

log = logging.getLogger(__name__)
SWEEP_LIMIT = 200


class DedupeStage:
    """Wires the pure decisions of :mod:`streams.dedupe_logic` to Faust tables and Kafka."""

    def __init__(self, app: faust.App, streams: StreamsSettings, kafka: KafkaSettings) -> None:
        self.app = app
        self.topics = Topics(kafka.topic_prefix)
        self.publisher = KafkaPublisher(kafka, client_id=streams.group_id("dedupe"), linger_ms=2)
        self.dlq = DeadLetters(self.publisher, self.topics.dlq, "dedupe")
        self.seen = json_table(app, "seen", kafka.partitions)
        self.newest = json_table(app, "newest", kafka.partitions)
        self.tables = {"seen": self.seen, "newest": self.newest}
        self.index = ExpiryIndex(int(streams.dedupe_window * 1000))
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
            lambda: {"expiry_index_entries": len(self.index)},
        )
        source = raw_topic(app, self.topics.visit_completed, self.topics.treatment_updated)
        app.agent(source, name="dedupe")(self._agent)
        app.on_partitions_assigned.connect(
            cast(Any, self._on_assigned)
        )  # mode types signals loosely
        app.on_before_shutdown.connect(cast(Any, self._on_shutdown))  # mode types signals loosely

    async def _on_assigned(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        self.index_stale = True

    async def _on_shutdown(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        await self.publisher.stop()

    async def _agent(self, stream: Any) -> None:
        async for event in unacked_events(stream):
            source = source_of(event)
            try:
                await self.handle(source)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("dedupe failed for a message; dead-lettering it")
                await self.dlq.send(
                    source,
                    error="unexpected error in the dedupe stage",
                    error_type=type(exc).__name__,
                )
            await ack(stream, event)

    async def handle(self, source: SourceMessage) -> None:
        """Process one raw message (must run inside the agent: table writes need the event)."""
        try:
            envelope = decode_envelope(source.value)
        except EnvelopeInvalid as exc:
            await self.dlq.send(source, error=str(exc), error_type="EnvelopeInvalid")
            return
        now_ms = int(time.time() * 1000)
        self._sweep(source.partition, now_ms)
        newest = self.newest.get(envelope.entity_id)
        decision = verdict(
            self.seen.get(envelope.event_id), newest["ts"] if newest else None, envelope
        )
        if isinstance(decision, Drop):
            self.counts["duplicates"] += 1
            log.debug("duplicate dropped", extra={"event_id": envelope.event_id})
            return
        await self._publish_clean(envelope, decision, source)
        self._record(envelope, decision, source.partition, now_ms)

    async def _publish_clean(
        self, envelope: Any, disposition: Disposition, source: SourceMessage
    ) -> None:
        topic = self.topics.clean_for(envelope.event)
        if topic is None:
            raise ValueError(f"no clean topic for event type {envelope.event!r}")
        value = reencode(envelope, disposition)
        message_headers = headers(
            event=envelope.event, event_id=envelope.event_id, disposition=disposition.value
        )
        delay = 0.2
        while True:
            try:
                await self.publisher.publish(
                    topic,
                    value,
                    key=envelope.entity_id.encode(),
                    headers=message_headers,
                    timeout=10,
                )
                break
            except PublishFailed as exc:
                log.warning("clean topic write failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10)
        self.counts[f"published_{disposition.value}"] += 1
        log.info(
            "event published",
            extra={"event_id": envelope.event_id, "disposition": disposition.value},
        )

    def _record(self, envelope: Any, disposition: Disposition, partition: int, now_ms: int) -> None:
        self.seen[envelope.event_id] = seen_entry(envelope, partition, now_ms)
        self.index.add(partition, now_ms, "seen", envelope.event_id)
        if disposition is Disposition.APPLY:
            entry = newest_entry(envelope, partition, now_ms)
            if entry is not None:
                self.newest[envelope.entity_id] = entry
                self.index.add(partition, now_ms, "newest", envelope.entity_id)

    def _rebuild_index(self) -> None:
        """After a rebalance or restart, index what the tables hold (restored entries too)."""
        self.index.clear()
        for name, table in self.tables.items():
            for key, value in table.items():
                if isinstance(value, dict) and "at" in value and "p" in value:
                    self.index.add(int(value["p"]), int(value["at"]), name, key)
        self.index_stale = False
        log.info("dedupe expiry index rebuilt", extra={"entries": len(self.index)})

    def _sweep(self, partition: int, now_ms: int) -> None:
        """Tombstone this partition's entries older than the window."""
        if self.index_stale:
            self._rebuild_index()
        for at, name, key in self.index.expired(partition, now_ms, SWEEP_LIMIT):
            table = self.tables[name]
            current = table.get(key)
            if isinstance(current, dict) and current.get("at") == at:
                del table[key]
                self.counts["expired"] += 1
