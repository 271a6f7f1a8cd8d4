"""Helpers for integration tests: waiting, reading topics and mail, cutting connections."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient


async def wait_until(
    check: Callable[[], Awaitable[Any]], timeout: float, what: str, interval: float = 0.2
) -> Any:
    """Poll an async ``check`` until it returns something truthy; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


async def read_topic(bootstrap: str, topic: str, idle: float = 1.5) -> list[Any]:
    """Every message currently on ``topic`` (all partitions), read with a throwaway group."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"test-reader-{uuid.uuid4().hex[:8]}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        out: list[Any] = []
        while True:
            batch = await consumer.getmany(timeout_ms=int(idle * 1000))
            if not batch:
                return out
            for messages in batch.values():
                out.extend(messages)
    finally:
        await consumer.stop()


async def produce(bootstrap: str, topic: str, items: list[tuple[bytes, bytes]]) -> None:
    """Write ``(key, value)`` messages to ``topic`` and wait for every ack (acks=all)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        futures = [await producer.send(topic, value, key=key) for key, value in items]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    """The offset after the last message of each partition of ``topic``, now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (described,) = await admin.describe_topics([topic])
    finally:
        await admin.close()
    partitions = [TopicPartition(topic, p["partition"]) for p in described["partitions"]]
    assert partitions, f"no partitions for {topic}"
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await consumer.start()
    try:
        ends = await consumer.end_offsets(partitions)
        return {tp.partition: offset for tp, offset in ends.items()}
    finally:
        await consumer.stop()


async def committed_offsets(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The offsets ``group`` has committed on ``topic``, by partition (absent: none yet)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp.partition: meta.offset for tp, meta in offsets.items() if tp.topic == topic}


async def wait_consumed(bootstrap: str, group: str, topic: str, timeout: float = 60) -> None:
    """Wait until ``group`` has committed past every message on ``topic`` now.

    A positive sign that each of them was handled and acked (the stages commit
    only acked offsets), where a sleep would only say that time passed.
    """
    ends = await end_offsets(bootstrap, topic)

    async def past_the_end() -> bool:
        done = await committed_offsets(bootstrap, group, topic)
        return all(done.get(p, 0) >= end for p, end in ends.items())

    await wait_until(past_the_end, timeout, f"{group} to commit past {ends} on {topic}", 0.3)


async def wait_group_stable(
    bootstrap: str, group: str, timeout: float = 60, members: int = 1
) -> None:
    """Wait until a consumer group is Stable with ``members`` members."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:

        async def stable() -> bool:
            try:
                (response,) = await admin.describe_consumer_groups([group])
            except Exception:  # noqa: BLE001 - coordinator not ready yet
                return False
            groups = response.to_object()["groups"]
            if not groups:
                return False
            state = groups[0].get("state", groups[0].get("group_state"))
            return state == "Stable" and len(groups[0].get("members", [])) == members

        await wait_until(stable, timeout, f"consumer group {group} to be Stable", 0.5)
    finally:
        await admin.close()


class TcpProxy:
    """A TCP forwarder the test can cut: ``down()`` refuses and drops connections, ``up()``
    serves again. It stands between a worker and Postgres or SMTP to simulate outages."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def up(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def down(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for writer in list(self._writers):
            writer.close()
        self._writers.clear()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers.update({writer, up_writer})

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.CancelledError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.close()

        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        self._writers.difference_update({writer, up_writer})


class RecordingPublisher:
    """An in-memory :class:`~spakinect_pipeline.publisher.Publisher` for unit tests.

    ``fail`` refuses every write; ``failures`` refuses only the next that many calls.
    """

    def __init__(
        self, fail: bool = False, metadata_at: float | None = None, failures: int = 0
    ) -> None:
        self.fail = fail
        self.failures = failures
        self.metadata_at = metadata_at  # when metadata was last fetched (monotonic); None: now
        self.messages: list[tuple[str, bytes | None, bytes | None, list[tuple[str, bytes]]]] = []
        self.offsets: dict[tuple[str, int], int] = {}

    @property
    def last_metadata_ok(self) -> float | None:
        if self.fail:
            return None
        return time.monotonic() if self.metadata_at is None else self.metadata_at

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(
        self, topic: str, value: bytes, *, key: bytes | None, headers: Any = (), timeout: float
    ) -> None:
        from spakinect_pipeline.publisher import PublishFailed

        if self.fail or self.failures > 0:
            self.failures = max(0, self.failures - 1)
            raise PublishFailed("no ack")
        self.messages.append((topic, key, value, list(headers)))

    async def publish_many(self, messages: Any, *, timeout: float) -> list[Any]:
        from spakinect_pipeline.publisher import PublishFailed, Written

        if self.fail or self.failures > 0:
            self.failures = max(0, self.failures - 1)
            raise PublishFailed("no ack")
        written = []
        for m in messages:
            partition = 0 if m.partition is None else m.partition
            offset = self.offsets[(m.topic, partition)] = (
                self.offsets.get((m.topic, partition), -1) + 1
            )
            written.append(Written(m.topic, partition, offset))
            self.messages.append((m.topic, m.key, m.value, list(m.headers)))
        return written

    async def refresh_metadata(self, topics: Any, timeout: float = 5.0) -> bool:
        return True


def memory_table(
    state_dir: Path, partitions: int = 8, stage: str = "dedupe", name: str = "entities"
) -> Any:
    """A stage's table on a real Faust memory store (no Kafka), read and written a batch
    at a time: what a handler gets in a worker with ``STREAMS_STORE=memory``."""
    from spakinect_pipeline.config import KafkaSettings
    from streams.batch_table import BatchTable
    from streams.faust_app import create_faust_app, json_table
    from streams.settings import StreamsSettings

    streams = StreamsSettings(state_dir=state_dir, store="memory")
    app = create_faust_app(stage, streams, KafkaSettings())
    return BatchTable(json_table(app, name, partitions))
