"""The dedupe stage: drop duplicates, set the disposition, publish to the clean topics.

Order of work per batch: publish what passes to the clean topics, await the
acks, then record it as seen. A crash in between repeats the events
(harmless: sinks are idempotent), never loses them.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, MutableMapping, Sequence
from typing import Any, cast

from events.envelope import Disposition, Envelope, reencode
from events.topics import Topics, headers
from sinks.base import Record
from spakinect_pipeline.publisher import Message
from streams.dedupe_logic import (
    PARTITION,
    WRITTEN_AT,
    Drop,
    Entry,
    ExpiryIndex,
    entity_key,
    plan_batch,
)
from streams.faust_app import json_table
from streams.handler import Batch, Handler, Shape
from streams.runner import StageEnv, StageParts

log = logging.getLogger(__name__)
SWEEP_LIMIT = 200
# Natural batching: whatever arrived while the previous batch was being published.
SHAPE = Shape(batch_max=500, within_s=0, linger_ms=2, on_error="isolate")


class DedupeHandler(Handler):
    """Wires the pure decisions of :mod:`streams.dedupe_logic` to a table of entities.

    ``entities`` is the Faust table in a worker (one entry per entity, see
    :mod:`streams.dedupe_logic`), a plain dict in unit tests.
    """

    name = "dedupe"
    shape = SHAPE

    def __init__(self, entities: MutableMapping[str, Any], topics: Topics, window_s: float) -> None:
        self.entities = entities
        self.topics = topics
        self.window_ms = int(window_s * 1000)
        self.index = ExpiryIndex(self.window_ms)
        self.index_stale = True
        self.tally: dict[str, float] = {
            "published_apply": 0,
            "published_stale": 0,
            "published_unsuccessful": 0,
            "duplicates": 0,
            "expired": 0,
        }

    def counts(self) -> Mapping[str, float]:
        return self.tally

    def gauges(self) -> Mapping[str, float]:
        return {
            "expiry_index_entries": len(self.index),
            "expiry_overdue_seconds": self.index.overdue_ms() / 1000,
            "dedupe_window_seconds": self.window_ms / 1000,
        }

    async def on_assigned(self, sender: Any, *args: Any, **kwargs: Any) -> None:
        """Partitions moved: the index no longer matches the table; rebuild it before use."""
        self.index_stale = True

    async def handle(self, batch: Batch) -> None:
        """Decide a batch, publish what passes in one round trip, then record it as seen."""
        now_ms = int(time.time() * 1000)
        swept: set[int] = set()
        entries: dict[str, Entry | None] = {}
        owner: dict[str, Record] = {}
        for record in batch.records:
            batch.focus(record)
            partition = record.source.partition
            if partition not in swept:
                # At least as many as this batch can add, so the sweep keeps up.
                self._sweep(partition, now_ms, SWEEP_LIMIT + len(batch.records))
                swept.add(partition)
            key = entity_key(record.envelope)
            if key not in entries:
                entries[key] = self.entities.get(key)
                owner[key] = record
        plan = plan_batch(
            [(r.envelope, r.source.partition) for r in batch.records],
            entries.__getitem__,
            now_ms=now_ms,
            window_ms=self.window_ms,
        )
        passed: list[tuple[Record, Disposition]] = []
        for record, decision in zip(batch.records, plan.verdicts, strict=True):
            if isinstance(decision, Drop):
                self.tally["duplicates"] += 1
                batch.outcome(record, "duplicate")
                log.debug("duplicate dropped", extra={"event_id": record.envelope.event_id})
            else:
                passed.append((record, decision))
        await batch.publish([self._clean_message(batch, r, d) for r, d in passed])
        for record, disposition in passed:
            self.tally[f"published_{disposition.value}"] += 1
            batch.outcome(record, "published", disposition.value)
            log.info(
                "event published",
                extra={"event_id": record.envelope.event_id, "disposition": disposition.value},
            )
        for key, entry in plan.entries.items():
            batch.focus(owner[key])
            self.entities[key] = entry
            self.index.add(entry[PARTITION], entry[WRITTEN_AT], key)

    def _clean_message(self, batch: Batch, record: Record, disposition: Disposition) -> Message:
        """The clean-topic message, carrying the trace context of its event's dedupe span."""
        envelope: Envelope = record.envelope
        topic = self.topics.clean_for(envelope.event)
        if topic is None:
            raise ValueError(f"no clean topic for event type {envelope.event!r}")
        message_headers = headers(
            event=envelope.event, event_id=envelope.event_id, disposition=disposition.value
        )
        message_headers.extend(batch.trace_headers(record))
        return Message(
            topic, reencode(envelope, disposition), envelope.entity_id.encode(), message_headers
        )

    def _rebuild_index(self) -> None:
        """After a rebalance or restart, index what the table holds (restored entries too)."""
        self.index.clear()
        for key, value in self.entities.items():
            if isinstance(value, dict) and WRITTEN_AT in value and PARTITION in value:
                self.index.add(int(value[PARTITION]), int(value[WRITTEN_AT]), key)
        self.index_stale = False
        log.info("dedupe expiry index rebuilt", extra={"entries": len(self.index)})

    def _sweep(self, partition: int, now_ms: int, limit: int) -> None:
        """Tombstone this partition's entries older than the window."""
        if self.index_stale:
            self._rebuild_index()
        for key in self.index.expired(partition, now_ms, limit):
            # The index holds each key's current write, so no read is needed to confirm it.
            del self.entities[key]
            self.tally["expired"] += 1


def build(env: StageEnv) -> StageParts:
    raw: Sequence[str] = env.topics.raw_topics()
    handler = DedupeHandler(
        json_table(env.app, "entities", env.kafka.partitions),
        env.topics,
        env.streams.dedupe_window,
    )
    env.app.on_partitions_assigned.connect(cast(Any, handler.on_assigned))
    return StageParts(handler, subscribe=raw, ready_on=raw)
