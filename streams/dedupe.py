"""The dedupe stage: drop duplicates, set the disposition, publish to the clean topics.

Order of work per batch: publish what passes to the clean topics, await the
acks, then record it as seen (the table's changelog, acked, then the local
store). A crash in between repeats the events (harmless: sinks are
idempotent), never loses them.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, cast

from events.envelope import Disposition, Envelope, Record, reencode
from events.topics import Topics, headers
from spakinect_pipeline.publisher import Message
from streams.batch_table import BatchTable, Table
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
# Whatever arrived while the previous batch was being published, and, only while the
# rate brings more (spakinect_pipeline.rate_wait), up to 10 ms more of it: taking only
# what was queued gave batches of ~2 events at 500/s once the publisher stopped
# lingering, two produce round trips each (docs/deployment.md, Sizing).
SHAPE = Shape(batch_max=500, within_s=0.01, linger_ms=2, on_error="isolate")


@dataclass
class Reading:
    """What a batch read: each entity's entry, the sweep's keys and tombstones, the stores."""

    now_ms: int
    entries: dict[str, Entry | None] = field(default_factory=dict)
    changes: dict[int, dict[str, Entry | None]] = field(default_factory=dict)
    swept: dict[int, list[tuple[int, str]]] = field(default_factory=dict)
    held: dict[int, Any] = field(default_factory=dict)  # BatchTable.held per partition


class DedupeHandler(Handler):
    """Wires the pure decisions of :mod:`streams.dedupe_logic` to a table of entities.

    ``entities`` is the worker's Faust table read and written a batch at a time
    (:class:`~streams.batch_table.BatchTable`, one entry per entity, see
    :mod:`streams.dedupe_logic`): per batch one multi-get per partition, one
    clean publish, then one changelog publish and one store write per partition.
    """

    name = "dedupe"
    shape = SHAPE

    def __init__(self, entities: Table, topics: Topics, window_s: float) -> None:
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
        reading = Reading(int(time.time() * 1000))
        try:
            self._read(batch.records, reading)
            await self._handle(batch, reading)
        except BaseException:
            # Swept keys left the index before their tombstones were written: put them back.
            for partition, taken in reading.swept.items():
                self.index.restore(partition, taken)
            raise

    async def _handle(self, batch: Batch, reading: Reading) -> None:
        plan = plan_batch(
            [(r.envelope, r.source.partition) for r in batch.records],
            reading.entries.__getitem__,
            now_ms=reading.now_ms,
            window_ms=self.window_ms,
        )
        passed: list[tuple[Record, Disposition]] = []
        for record, decision in zip(batch.records, plan.verdicts, strict=True):
            if isinstance(decision, Drop):
                batch.outcome(record, "duplicate")
                log.debug("duplicate dropped", extra={"event_id": record.envelope.event_id})
            else:
                passed.append((record, decision))
        await batch.publish([self._clean_message(batch, r, d) for r, d in passed])
        published: Counter[str] = Counter()
        for record, disposition in passed:
            published[disposition.value] += 1
            batch.outcome(record, "published", disposition.value)
            log.debug(
                "event published",
                extra={"event_id": record.envelope.event_id, "disposition": disposition.value},
            )
        changes = reading.changes
        for key, entry in plan.entries.items():
            changes[entry[PARTITION]][key] = entry
        writes = [self.entities.prepare(p, c, reading.held[p]) for p, c in changes.items() if c]
        # The changelog acked first, then the local store.
        written = await batch.publish([m for w in writes for m in w.messages])
        for write in writes:
            self.entities.apply(write, written)
        for key, entry in plan.entries.items():
            self.index.add(entry[PARTITION], entry[WRITTEN_AT], key)
        duplicates = len(batch.records) - len(passed)
        expired = sum(1 for c in changes.values() for v in c.values() if v is None)
        self._count(published, duplicates, expired)

    def _read(self, records: Sequence[Record], reading: Reading) -> None:
        """Sweep each partition, then read every entity of the batch in one get per partition.

        The sweep's tombstones start the changes to write (the batch's own entries
        then overwrite theirs); an entity swept just now reads as absent.
        """
        if self.index_stale:
            self._rebuild_index()
        keys: dict[int, dict[str, None]] = {}
        for record in records:
            keys.setdefault(record.source.partition, {})[entity_key(record.envelope)] = None
        now_ms = reading.now_ms
        for partition, wanted in keys.items():
            reading.held[partition] = self.entities.held(partition)
            # At least as many as this batch can add, so the sweep keeps up. The index
            # holds each key's current write, so no read is needed to confirm it.
            taken = self.index.take_expired(partition, now_ms, SWEEP_LIMIT + len(records))
            reading.swept[partition] = taken
            reading.changes[partition] = {key: None for _, key in taken}
            values = self.entities.get_many(partition, list(wanted))
            reading.entries.update(zip(wanted, values, strict=True))
            reading.entries.update((key, None) for _, key in taken if key in reading.entries)

    def _count(self, published: Counter[str], duplicates: int, expired: int) -> None:
        for disposition, n in published.items():
            self.tally[f"published_{disposition}"] += n
        self.tally["duplicates"] += duplicates
        self.tally["expired"] += expired
        log.info(
            "batch deduplicated",
            extra={
                **{f"published_{d}": n for d, n in published.items()},
                "duplicates": duplicates,
                "expired": expired,
            },
        )

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


def build(env: StageEnv) -> StageParts:
    raw: Sequence[str] = env.topics.raw_topics()
    handler = DedupeHandler(
        BatchTable(json_table(env.app, "entities", env.kafka.partitions)),
        env.topics,
        env.streams.dedupe_window,
    )
    env.app.on_partitions_assigned.connect(cast(Any, handler.on_assigned))
    return StageParts(handler, subscribe=raw, ready_on=raw)
