"""The one seam to Faust (streams.faust_adapter): every private name it uses, pinned.

Each test fails when a faust-streaming, mode or aiokafka upgrade renames or
changes what the adapter relies on, and the behaviour tests drive the
adapter's own logic on a real (unstarted) Faust consumer.
"""

import asyncio
import inspect
import time
from types import SimpleNamespace
from typing import Any

import pytest
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from spakinect_pipeline.config import KafkaSettings
from streams import faust_adapter as adapter_consumer
from streams.faust_adapter import PipelineApp, RewindingConsumerThread, StrictConsumer
from streams.faust_app import create_faust_app
from streams.settings import StreamsSettings

SOURCE = TP("spakinect.visits", 0)


def app_for(tmp_path: Any, stage: str = "email") -> Any:
    return create_faust_app(
        stage, StreamsSettings(store="memory", state_dir=tmp_path), KafkaSettings()
    )


def test_every_private_name_the_adapter_uses_exists(tmp_path):
    """Names listed in streams/faust_adapter.py: renamed upstream, this fails."""
    import faust
    from aiokafka import AIOKafkaConsumer
    from faust.stores import memory, rocksdb

    consumer_methods = (
        "_new_consumer_thread",
        "_to_message",
        "_add_gap",
        "_new_offset",
        "_commit_offsets",
        "_is_changelog_tp",
        "on_partitions_revoked",
        "on_partitions_assigned",
        "commit",
        "seek_wait",
        "earliest_offsets",
        "highwater",
    )
    for name in consumer_methods:
        assert callable(getattr(faust_aiokafka.Consumer, name)), name
    for name in ("_create_worker_consumer", "_ensure_consumer", "call_thread", "seek_to_committed"):
        assert callable(getattr(faust_aiokafka.AIOKafkaConsumerThread, name)), name
    assert callable(faust.App._new_transport)
    assert callable(faust.App.on_stop)
    assert callable(faust.Worker._schedule_shutdown)
    assert callable(rocksdb.Store._db_for_partition)
    assert isinstance(rocksdb.Store.offset_key, bytes)
    assert "self._dbs = {}" in inspect.getsource(rocksdb.Store.__init__)
    assert "self._key_partition" in inspect.getsource(memory.Store)
    assert "self._fetch_min_bytes" in inspect.getsource(AIOKafkaConsumer.__init__)
    consumer = app_for(tmp_path).consumer
    assert isinstance(consumer, StrictConsumer)
    for name in ("_acked", "_acked_index", "_committed_offset", "_read_offset"):
        assert isinstance(getattr(consumer, name), dict), name
    params = inspect.signature(faust_aiokafka.Consumer._commit_offsets).parameters
    assert list(params)[:2] == ["self", "offsets"]


def test_faust_still_moves_its_committed_offset_on_a_failed_commit():
    """Why StrictConsumer._commit_offsets puts it back (harmless once Faust stops doing it)."""
    from faust.transport.consumer import Consumer

    source = inspect.getsource(Consumer._commit_offsets)
    assert "self._committed_offset.update(committable_offsets)" in source


def test_faust_still_leaves_a_revoked_rocksdb_open():
    """Why faust_adapter.close_released closes what Faust drops (harmless once Faust closes it)."""
    from faust.stores import rocksdb

    assert "# db.close()" in inspect.getsource(rocksdb.Store.revoke_partitions)


async def test_a_partition_nobody_committed_starts_from_its_beginning(tmp_path, monkeypatch):
    """RewindingConsumerThread: aiokafka's seek_to_committed leaves such a partition alone."""
    app = app_for(tmp_path)
    consumer, thread = app.consumer, app.consumer._thread
    assert isinstance(thread, RewindingConsumerThread)
    fresh, changelog = TP("spakinect.visits", 1), TP("app-email-sent-changelog", 0)
    beginnings = {fresh: 3, changelog: 0}
    sought: list[Any] = []

    class Client:
        async def seek_to_committed(self) -> dict[Any, int | None]:
            return {SOURCE: 7, fresh: None, changelog: None}

        async def seek_to_beginning(self, *tps: Any) -> None:
            sought.extend(tps)

        async def position(self, tp: Any) -> int:
            return beginnings[tp]

    monkeypatch.setattr(thread, "_ensure_consumer", Client)
    monkeypatch.setattr(consumer, "_is_changelog_tp", lambda tp: tp == changelog)
    committed = await thread._seek_to_committed_or_start()
    assert sought == [fresh]  # a changelog without a commit is Faust's to recover
    assert committed == {SOURCE: 7, fresh: 3, changelog: None}
    assert consumer._start_offsets == {SOURCE: 7, fresh: 3}


def test_stage_apps_use_the_strict_consumer_and_the_fence(tmp_path):
    app = app_for(tmp_path)
    assert isinstance(app, PipelineApp)
    assert app.transport.Consumer is StrictConsumer
    assert app.consumer.fence is app.fence
    assert app.drain_bound_s == StreamsSettings().drain_bound_s == 10.0


async def test_a_failed_commit_leaves_the_committed_offset_where_it_was(tmp_path, monkeypatch):
    app = app_for(tmp_path)
    consumer = app.consumer
    consumer._committed_offset[SOURCE] = 4

    async def refused(offsets: Any) -> bool:
        return False  # what Faust's _commit returns for "already rebalanced"

    async def flushed() -> None: ...

    monkeypatch.setattr(consumer, "_commit", refused)
    monkeypatch.setattr(consumer, "assignment", lambda: {SOURCE})
    monkeypatch.setattr(app.producer, "flush", flushed)
    assert await consumer._commit_offsets({SOURCE: 9}) is False
    assert consumer._committed_offset[SOURCE] == 4
    # Faust's ack() ignores offsets below its committed one: 5..8, re-delivered after the
    # failed commit, still count, and the floor of the next commit is 4.
    assert consumer.committed_offsets() == {SOURCE: 4}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def quiet_partition(tmp_path: Any, monkeypatch: Any, committed: int, end: int) -> Any:
    """A consumer owning SOURCE, committed at ``committed``, its end at ``end``, idle."""
    app = app_for(tmp_path)
    consumer = app.consumer
    clock = Clock()
    monkeypatch.setattr(adapter_consumer.time, "monotonic", clock)
    consumer.note_start_offsets({SOURCE: committed})
    monkeypatch.setattr(consumer, "assignment", lambda: {SOURCE})
    monkeypatch.setattr(consumer, "highwater", lambda tp: end)
    app.fence.assign([SOURCE])
    app.fence.last_taken = clock.now - 60
    seeks: list[dict[Any, int]] = []

    async def seek_wait(partitions: dict[Any, int]) -> None:
        seeks.append(dict(partitions))

    async def earliest(*tps: Any) -> dict[Any, int]:
        return {tp: consumer.log_start for tp in tps}

    consumer.log_start = 0
    monkeypatch.setattr(consumer, "seek_wait", seek_wait)
    monkeypatch.setattr(consumer, "earliest_offsets", earliest)
    return SimpleNamespace(app=app, consumer=consumer, clock=clock, seeks=seeks)


async def test_a_hole_at_a_quiet_partitions_end_is_read_again(tmp_path, monkeypatch):
    """Committed 2, end 6, nothing acked, the stage idle: offsets 2..5 were read past."""
    q = quiet_partition(tmp_path, monkeypatch, committed=2, end=6)
    q.consumer._watch_tails(q.clock())
    assert q.consumer._tails.due(q.clock()) == []  # not before the grace period
    q.clock.now += adapter_consumer.TAIL_GRACE_S
    q.consumer._watch_tails(q.clock())
    await q.consumer._reread(q.consumer._tails.due(q.clock()))
    assert q.seeks == [{SOURCE: 2}]


async def test_a_busy_stage_or_a_caught_up_partition_is_left_alone(tmp_path, monkeypatch):
    q = quiet_partition(tmp_path, monkeypatch, committed=6, end=6)
    for _ in range(3):
        q.clock.now += adapter_consumer.TAIL_GRACE_S
        q.consumer._watch_tails(q.clock())
    assert q.consumer._tails.due(q.clock()) == []
    busy = quiet_partition(tmp_path / "busy", monkeypatch, committed=2, end=6)
    lease = busy.app.fence.lease([SOURCE])  # a batch in flight (a slow sink, say)
    for _ in range(3):
        busy.clock.now += adapter_consumer.TAIL_GRACE_S
        busy.consumer._watch_tails(busy.clock())
    assert busy.consumer._tails.due(busy.clock()) == []
    busy.app.fence.release(lease)


async def test_a_commit_older_than_the_log_start_resumes_from_the_log_start(tmp_path, monkeypatch):
    """Retention deleted 2..99 while the stage was down; it read 100 and 101 since."""
    q = quiet_partition(tmp_path, monkeypatch, committed=2, end=102)
    q.consumer.log_start = 100
    q.consumer._acked[SOURCE].extend([100, 101])
    assert q.consumer._new_offset(SOURCE) is None  # blocked by the hole at 2
    await q.consumer._reread([(SOURCE, 2)])
    assert q.seeks == []  # 100 is read already: no seek needed
    assert q.consumer.offset_resets[(SOURCE.topic, SOURCE.partition)] == 1
    assert q.consumer._new_offset(SOURCE) == 102


async def test_a_revoke_waits_for_the_batch_in_flight_then_closes_its_epoch(tmp_path):
    app = app_for(tmp_path)
    app.fence.assign([SOURCE])
    lease = app.fence.lease([SOURCE])

    async def finish() -> None:
        await asyncio.sleep(0.05)
        lease.check()  # still owned while the revoke waits
        app.fence.release(lease)

    started = time.monotonic()
    finishing = asyncio.ensure_future(finish())
    assert await app.fence.revoke({SOURCE}, bound_s=5) == []
    await finishing
    assert time.monotonic() - started < 1
    assert not lease.valid
    assert not app.fence.lease([SOURCE]).valid  # not owned now


def test_the_strict_consumer_notes_timestamps_of_source_messages_only(tmp_path):
    from types import SimpleNamespace

    from faust.types import TP

    from streams.faust_app import create_faust_app
    from streams.settings import StreamsSettings

    app = create_faust_app(
        "dedupe", StreamsSettings(store="memory", state_dir=tmp_path), KafkaSettings()
    )
    consumer = app.consumer
    source, changelog = TP("spakinect.visit-completed", 0), TP("x-entities-changelog", 0)
    consumer.note_start_offsets({source: 7})
    for tp in (source, changelog):
        record = SimpleNamespace(
            topic=tp.topic,
            partition=tp.partition,
            offset=7,
            timestamp=1_000_000,
            timestamp_type=0,
            headers=[],
            key=b"k",
            value=b"v",
            checksum=None,
            serialized_key_size=1,
            serialized_value_size=1,
        )
        message = consumer._to_message(tp, record)
        assert (message.offset, message.timestamp) == (7, 1000.0)
    assert len(consumer._behind) == 1
    assert consumer._behind.seconds(source, lag=1, committed=7, now=1060.0) == 60.0


async def test_source_fetches_wait_to_gather_as_the_streams_settings_say(tmp_path):
    import inspect

    from aiokafka import AIOKafkaConsumer

    from streams.faust_app import create_faust_app
    from streams.settings import StreamsSettings

    streams = StreamsSettings(
        store="memory", state_dir=tmp_path, fetch_min_bytes=4096, fetch_max_wait_s=0.02
    )
    app = create_faust_app("dedupe", streams, KafkaSettings())
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    try:
        assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (4096, 20)
    finally:
        await consumer.stop()
    # aiokafka hands exactly these attributes to its fetcher when the consumer starts.
    start = inspect.getsource(AIOKafkaConsumer.start)
    assert "fetch_min_bytes=self._fetch_min_bytes" in start
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in start


def test_the_monitor_skips_faust_per_message_bookkeeping(tmp_path):
    from types import SimpleNamespace

    from faust.types import TP

    from streams.faust_app import QuietMonitor, create_faust_app
    from streams.settings import StreamsSettings

    app = create_faust_app(
        "dedupe", StreamsSettings(store="memory", state_dir=tmp_path), KafkaSettings()
    )
    monitor = app.monitor
    assert isinstance(monitor, QuietMonitor)
    message = SimpleNamespace(time_in=None)
    monitor.on_message_in(TP("t", 0), 5, message)
    monitor.on_message_out(TP("t", 0), 5, message)
    assert (monitor.messages_received_total, monitor.messages_active, message.time_in) == (
        0,
        0,
        None,
    )
    monitor.on_commit_completed(app.consumer, monitor.on_commit_initiated(app.consumer))
    assert monitor.commit_latency  # what is not per message is still kept


def test_the_drain_bound_fits_inside_the_shutdown_budget():
    from pydantic import ValidationError

    assert StreamsSettings(shutdown_timeout_s=5).drain_bound_s == 2.5
    assert StreamsSettings(drain_timeout_s=3, shutdown_timeout_s=5).drain_bound_s == 3
    with pytest.raises(ValidationError, match="STREAMS_DRAIN_TIMEOUT_S"):
        StreamsSettings(drain_timeout_s=6, shutdown_timeout_s=5)
