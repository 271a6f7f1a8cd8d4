"""Follow the key topic from its end: tombstones evict keys, and how fresh that news is.

The ingress seals with keys it minted itself and never loads the whole key
topic (docs/patient-data-on-kafka.md). What it must not miss is a forget: a
tombstone for one of its keys. :class:`KeyFollower` reads the topic from its
end at start, calls ``on_tombstone`` for each tombstone, and records when it
last *caught up*: the moment just before it asked the broker for the end
offset and then read up to it. Every tombstone written before that moment has
been applied, so a sealer that refuses cached keys once ``caught_up`` is older
than a bound never seals with a destroyed key for longer than that bound.
One long-lived consumer, one ``ListOffsets`` request per ``interval_s``. After
a broker error it resumes where it stopped, not at the end: a tombstone
written during the outage must still be applied before it counts as caught up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.phi.key_store import ensure_key_topic, key_topic

log = logging.getLogger(__name__)


class KeyFollower:
    def __init__(
        self,
        kafka: KafkaSettings,
        on_tombstone: Callable[[str], None],
        interval_s: float = 1.0,
        create_topic: bool = True,
        consumer: Callable[[], Any] | None = None,
    ) -> None:
        self.kafka = kafka
        self.on_tombstone = on_tombstone
        self.interval_s = interval_s
        self.create_topic = create_topic
        self.caught_up: float | None = None  # time.monotonic() of the last catch-up
        # When it first knew its start offset: a key minted before may have its record (and
        # tombstone) before that offset, so a catch-up says nothing of it.
        self.following_since: float | None = None
        self._partition = TopicPartition(key_topic(kafka.topic_prefix), 0)
        # Out of range (compacted away while down): from the earliest, never past a tombstone.
        self._consumer = consumer or (
            lambda: AIOKafkaConsumer(
                **kafka.client_options(), enable_auto_commit=False, auto_offset_reset="earliest"
            )
        )
        self._next: int | None = None  # the offset to resume from after a broker error

    async def run(self) -> None:
        """Follow until cancelled; a broker outage only pauses it (``caught_up`` ages)."""
        while True:
            try:
                await self._follow()
            except (KafkaError, OSError) as exc:
                log.warning("key topic: cannot follow it (%s); retrying", type(exc).__name__)
                await asyncio.sleep(self.interval_s)

    async def _follow(self) -> None:
        if self.create_topic:
            self.create_topic = False  # once: without create rights, `topics create` made it
            try:
                await ensure_key_topic(self.kafka)
            except (KafkaError, OSError) as exc:
                log.warning("key topic: not created here (%s)", type(exc).__name__)
        consumer = self._consumer()
        await consumer.start()
        try:
            consumer.assign([self._partition])
            if self._next is None:  # the first start: from the end (no key cached yet)
                await consumer.seek_to_end(self._partition)
                self._next = await consumer.position(self._partition)
                self.following_since = time.monotonic()
            else:
                consumer.seek(self._partition, self._next)
            while True:
                asked = time.monotonic()
                if await self._read_to_end(consumer):
                    self.caught_up = asked
                await asyncio.sleep(self.interval_s)
        finally:
            with contextlib.suppress(KafkaError, OSError):
                await consumer.stop()

    async def _read_to_end(self, consumer: AIOKafkaConsumer) -> bool:
        """Apply the tombstones up to the current end; False when a fetch came back empty."""
        tp = self._partition
        end = (await consumer.end_offsets([tp]))[tp]
        while await consumer.position(tp) < end:
            before = await consumer.position(tp)
            batch = await consumer.getmany(tp, timeout_ms=int(self.interval_s * 1000))
            for message in batch.get(tp, []):
                if message.value is None and message.key is not None:
                    self.on_tombstone(message.key.decode())
                self._next = message.offset + 1
            if not batch and await consumer.position(tp) == before:
                return False  # slow broker (or offsets compacted away): not caught up yet
        return True
