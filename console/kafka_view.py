"""What the console reads from Kafka, without a consumer group and without scanning topics.

Counts come from offsets (``offsets_for_times`` per hour, end minus
beginning); a timeline reads one partition from a known offset or time,
bounded in messages, so a lookup costs the same on a topic of any size.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError
from aiokafka.partitioner import murmur2

from spakinect_pipeline.config import KafkaSettings

log = logging.getLogger(__name__)

CHECK_S = 3.0
"""How long a request waits for Kafka's metadata before calling Kafka unreachable."""
SCAN_LIMIT = 5000
"""Most messages a lookup reads from one partition."""
READERS = 3
"""Consumers that read partitions: that many reads run at once, the rest wait for one."""


@dataclass(frozen=True, slots=True)
class Found:
    """One message a lookup found: where, when, and its headers (never its value)."""

    topic: str
    partition: int
    offset: int
    at: datetime
    headers: dict[str, str]
    value: bytes | None
    key: bytes | None = None
    raw_headers: tuple[tuple[str, bytes], ...] = ()


class KafkaUnreachable(Exception):
    """Kafka did not answer: pages say so (503) instead of failing with a bare 500."""


@dataclass(slots=True)
class Scan:
    """What one partition read found, and whether it read everything it was asked to
    (False when it stopped at ``limit`` or at its time bound first)."""

    found: list[Found] = field(default_factory=list)
    complete: bool = True


def partition_for(key: bytes, partitions: int) -> int:
    """The partition Kafka's default partitioner gives ``key`` (murmur2, as the producers use)."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


class KafkaView:
    """Long-lived consumers (no group) and an admin client, shared by the console's requests.

    Offsets and metadata come from the first consumer, which never assigns
    partitions; reads take one of :data:`READERS` consumers of their own (an
    assignment is per consumer), so one slow lookup does not hold up the rest.
    """

    def __init__(self, kafka: KafkaSettings) -> None:
        self.kafka = kafka
        self._consumer: AIOKafkaConsumer | None = None
        self._admin: AIOKafkaAdminClient | None = None
        self._readers: list[AIOKafkaConsumer] = []
        self._free: asyncio.Queue[AIOKafkaConsumer] = asyncio.Queue()

    def _new_consumer(self) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            **self.kafka.client_options(),
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    async def start(self) -> None:
        """Connect; when Kafka is down the console still starts, and :meth:`check` retries."""
        try:
            await self._start()
        except KafkaUnreachable:
            log.warning("Kafka unreachable at start: the console retries on each request")

    async def _start(self) -> None:
        consumer = self._new_consumer()
        admin = AIOKafkaAdminClient(**self.kafka.client_options())
        readers = [self._new_consumer() for _ in range(READERS)]
        started: list[Any] = []
        try:
            for client in (consumer, *readers, admin):
                await asyncio.wait_for(client.start(), CHECK_S * 2)
                started.append(client)
        except (KafkaError, OSError, TimeoutError) as exc:
            for client in started:
                with contextlib.suppress(Exception):
                    await (client.close() if client is admin else client.stop())
            raise KafkaUnreachable(str(exc)) from exc
        self._consumer, self._admin, self._readers = consumer, admin, readers
        for reader in readers:
            self._free.put_nowait(reader)

    async def check(self) -> None:
        """Raise :class:`KafkaUnreachable` unless Kafka answers a metadata request now."""
        if self._consumer is None:
            await self._start()
        try:
            await asyncio.wait_for(self.consumer.topics(), CHECK_S)
        except (KafkaError, OSError, TimeoutError) as exc:
            raise KafkaUnreachable(str(exc)) from exc

    async def stop(self) -> None:
        for consumer in (self._consumer, *self._readers):
            if consumer is not None:
                await consumer.stop()
        if self._admin is not None:
            await self._admin.close()

    @contextlib.asynccontextmanager
    async def _reader(self) -> AsyncIterator[AIOKafkaConsumer]:
        reader = await self._free.get()
        try:
            yield reader
        finally:  # unassigned even when the read failed or was cancelled
            reader.assign([])
            self._free.put_nowait(reader)

    @property
    def consumer(self) -> AIOKafkaConsumer:
        if self._consumer is None:
            raise KafkaUnreachable("not connected")
        return self._consumer

    async def partitions(self, topic: str) -> list[TopicPartition]:
        found = self.consumer.partitions_for_topic(topic)
        if not found:  # not in the consumer's cached metadata yet: ask the cluster
            if self._admin is None:
                raise KafkaUnreachable("not connected")
            described = await self._admin.describe_topics([topic])
            found = {
                int(p["partition"])
                for t in described
                if t.get("topic") == topic and not t.get("error_code")
                for p in t.get("partitions", ())
            }
        return [TopicPartition(topic, p) for p in sorted(found)]

    async def count(self, topic: str) -> int:
        """Messages on ``topic`` now (end minus beginning offsets)."""
        tps = await self.partitions(topic)
        if not tps:
            return 0
        begin = await self.consumer.beginning_offsets(tps)
        end = await self.consumer.end_offsets(tps)
        return sum(end[tp] - begin[tp] for tp in tps)

    async def offsets_at(self, topics: Sequence[str], moments_ms: Sequence[int]) -> list[list[int]]:
        """Per topic, its total offset at each moment (one request per moment for all
        topics): differences are messages per interval."""
        tps = [tp for topic in topics for tp in await self.partitions(topic)]
        totals = [[0 for _ in moments_ms] for _ in topics]
        if not tps:
            return totals
        end = await self.consumer.end_offsets(tps)
        for i, ms in enumerate(moments_ms):
            found = await self.consumer.offsets_for_times(dict.fromkeys(tps, ms))
            for tp in tps:
                offset = end[tp] if found[tp] is None else found[tp].offset
                totals[topics.index(tp.topic)][i] += offset
        return totals

    async def last_message_at(self, topics: Sequence[str]) -> datetime | None:
        """Timestamp of the newest message on any of ``topics``."""
        newest: datetime | None = None
        for topic in topics:
            tps = await self.partitions(topic)
            end = await self.consumer.end_offsets(tps) if tps else {}
            for tp, offset in end.items():
                found = await self.read(tp.topic, tp.partition, offset - 1, limit=1)
                if found and (newest is None or found[0].at > newest):
                    newest = found[0].at
        return newest

    async def read(
        self,
        topic: str,
        partition: int,
        start: int,
        *,
        limit: int = SCAN_LIMIT,
        key: bytes | None = None,
        until_s: float = 5.0,
    ) -> list[Found]:
        """Messages of one partition from ``start`` to its end (at most ``limit`` read),
        those with ``key`` only when it is given."""
        return (
            await self.scan(topic, partition, start, limit=limit, key=key, until_s=until_s)
        ).found

    async def scan(
        self,
        topic: str,
        partition: int,
        start: int,
        *,
        limit: int = SCAN_LIMIT,
        key: bytes | None = None,
        until_s: float = 5.0,
    ) -> Scan:
        """As :meth:`read`, saying whether it got to the partition's end."""
        if start < 0:
            return Scan()
        tp = TopicPartition(topic, partition)
        end = (await self.consumer.end_offsets([tp]))[tp]
        stop = min(end, start + limit)
        if start >= stop:
            return Scan()
        scan = Scan(complete=False)
        deadline = time.monotonic() + until_s
        position = start
        async with self._reader() as reader:
            reader.assign([tp])
            reader.seek(tp, start)
            while position < stop and time.monotonic() < deadline:
                batch = await reader.getmany(tp, timeout_ms=500, max_records=500)
                for m in batch.get(tp, []):
                    position = m.offset + 1
                    if m.offset >= stop:
                        break
                    if key is None or m.key == key:
                        headers = {k: v.decode("utf-8", "replace") for k, v in m.headers or ()}
                        at = _at(m.timestamp)
                        raw = tuple(m.headers or ())
                        scan.found.append(
                            Found(topic, partition, m.offset, at, headers, m.value, m.key, raw)
                        )
                # Past control records and compacted gaps too, not only the last message.
                position = max(position, min(await reader.position(tp), stop))
        scan.complete = stop == end and position >= stop
        return scan

    async def message_at(self, topic: str, partition: int, offset: int) -> Found | None:
        """The one message at ``partition:offset`` of ``topic``, or None when there is none."""
        if partition not in {tp.partition for tp in await self.partitions(topic)}:
            return None
        found = await self.read(topic, partition, offset, limit=1)
        return found[0] if found and found[0].offset == offset else None

    async def beginning(self, topic: str, partition: int) -> int:
        tp = TopicPartition(topic, partition)
        return int((await self.consumer.beginning_offsets([tp]))[tp])

    async def offset_at(self, topic: str, partition: int, ms: int) -> int:
        """The first offset of one partition at or after ``ms`` (its end when none)."""
        tp = TopicPartition(topic, partition)
        found = await self.consumer.offsets_for_times({tp: ms})
        if found[tp] is not None:
            return int(found[tp].offset)
        return int((await self.consumer.end_offsets([tp]))[tp])

    async def group_lag(self, group: str, topics: Sequence[str]) -> dict[str, Any]:
        """Committed offsets of ``group`` against the topics' ends: messages behind, and
        since when the oldest waiting message has waited."""
        assert self._admin is not None
        committed = await self._admin.list_consumer_group_offsets(group)
        lag = 0
        oldest: datetime | None = None
        for topic in topics:
            tps = await self.partitions(topic)
            end = await self.consumer.end_offsets(tps) if tps else {}
            for tp, last in end.items():
                meta = committed.get(tp)
                done = meta.offset if meta is not None and meta.offset >= 0 else 0
                if last > done:
                    lag += last - done
                    first = await self.read(tp.topic, tp.partition, done, limit=1)
                    if first and (oldest is None or first[0].at < oldest):
                        oldest = first[0].at
        return {"lag": lag, "waiting_since": oldest}

    async def group_members(self, group: str) -> int:
        assert self._admin is not None
        try:
            (response,) = await self._admin.describe_consumer_groups([group])
        except KafkaError:  # no coordinator yet: nobody is in the group
            return 0
        groups = response.to_object()["groups"]
        return len(groups[0].get("members", [])) if groups else 0
