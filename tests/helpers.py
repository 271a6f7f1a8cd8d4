"""Helpers for integration tests: waiting, reading topics and mail, cutting connections."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer
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
    """An in-memory stand-in for KafkaPublisher (unit tests and fuzzing of the HTTP layer)."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.messages: list[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]] = []

    @property
    def last_metadata_ok(self) -> float | None:
        return None if self.fail else time.monotonic()

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(
        self, topic: str, value: bytes, *, key: bytes | None, headers: Any = (), timeout: float
    ) -> None:
        from spakinect_pipeline.publisher import PublishFailed

        if self.fail:
            raise PublishFailed("no ack")
        self.messages.append((topic, key, value, list(headers)))

    async def refresh_metadata(self, topics: Any, timeout: float = 5.0) -> bool:
        return True
