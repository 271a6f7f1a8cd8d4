"""The one seam to Faust's, mode's and aiokafka's private parts: the only module that names them.

Everything the pipeline promises about offsets, tables and rebalances rests on
a few of Faust's internals. They are reached from this module only, and each
is pinned by ``tests/unit/test_faust_adapter.py`` (the store parts by
``tests/unit/test_batch_table.py``) against the installed versions, so an
upgrade that renames or changes one fails there, not in production. The
protocol they implement is docs/commit-protocol.md.

Private names used:

- ``faust.transport.drivers.aiokafka.Consumer``: overrides ``_new_consumer_thread``,
  ``_to_message``, ``_add_gap``, ``_new_offset``, ``_commit_offsets``; reads and writes
  ``_acked``, ``_acked_index``, ``_committed_offset``; calls ``_is_changelog_tp``; its
  ``_thread``. Its thread: ``_create_worker_consumer``, ``_ensure_consumer``,
  ``call_thread``.
- aiokafka's ``AIOKafkaConsumer._fetch_min_bytes`` / ``_fetch_max_wait_ms`` (read by
  its fetcher when it starts), ``_fetcher`` and the fetcher's ``_fetch_min_bytes`` /
  ``_fetch_max_wait_ms`` (read per fetch request: the adaptive fetch shape).
- ``faust.App``: overrides ``_new_transport`` and ``on_stop`` (mode's documented hook).
- ``faust.stores.rocksdb.Store``: ``_dbs``, ``_db_for_partition``, ``offset_key``; the
  memory store's ``data`` and ``_key_partition``.
- ``faust.Worker`` (mode's worker): overrides ``_schedule_shutdown`` (its SIGTERM hook).

What faust-streaming (0.15) does around rebalances, and what this module does
instead:

1. After a rebalance Faust seeks to the committed offsets, but aiokafka's
   ``seek_to_committed`` does nothing for a partition with no commit:
   :class:`RewindingConsumerThread` seeks those to their beginning.
2. Faust treats a gap in the offsets it reads as acked, and tolerates a
   one-offset hole at commit: :class:`StrictConsumer` commits only an unbroken
   run of acked offsets that starts at the committed one (:mod:`streams.offsets`).
3. Messages fetched while Faust seeks or resumes can be dropped before they
   reach a stream, with the read position already past them. A hole followed
   by an ack is seen at commit; a hole at a quiet partition's end (nothing
   acked after it) is seen when the stage has been idle while the partition's
   end stays past its commit. Either way, past a grace period the partition
   is read again from the hole (every stage is idempotent).
4. A committed offset that retention has deleted: the consumer resets to the
   log start, and the hole below it can never be filled: the floor moves to
   the log start, with a warning and ``streams_offset_resets`` counted.
5. Faust moves its in-memory committed offset even when the commit failed
   ("already rebalanced"): here a failed commit puts it back, so acks of
   re-delivered offsets are not ignored.
6. A revoke drains first (:class:`streams.fence.Fence`): the revoked
   partitions' batches in flight finish (bounded), are committed, and only
   then does Faust revoke; a batch still running is fenced. The revoked
   partitions' RocksDB handles are closed (Faust drops them without closing:
   ``db.close()`` is commented out in faust-streaming 0.15, so the lock is held
   until garbage collection and a reassignment can fail on it).
7. Faust's stop revokes the tables and stops the fetcher first, then cancels
   the agents: :meth:`PipelineApp.on_stop` first runs the registered drains
   (the runner's: no new batch, the one in flight finishes, commit).
8. With Kafka unreachable Faust's shutdown never ends: :class:`BoundedStopWorker`
   exits ``shutdown_timeout_s`` after SIGTERM/SIGINT anyway.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from typing import Any, cast

import faust
from faust.stores import memory as memory_store
from faust.stores import rocksdb as rocksdb_store
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.behind import TimeBehind
from streams.fence import Fence
from streams.fetch_shape import AdaptiveFetch, FetchShape
from streams.offsets import HoleWatch, committable

log = logging.getLogger(__name__)
Drain = Callable[[float], Awaitable[None]]

HOLE_GRACE_S = 10.0  # an acked offset past an unacked one: the hole is re-read after this
TAIL_GRACE_S = 5.0  # idle this long with a partition's end past its commit: re-read it


def messages_behind(consumer: Any, tp: Any, committed: int | None) -> int | None:
    """Messages of ``tp`` after offset ``committed``; None while the partition's end is unknown."""
    try:
        highwater = consumer.highwater(tp)
    except Exception:  # noqa: BLE001 - partition metadata not known yet
        return None
    if highwater is None:
        return None
    return max(0, int(highwater) - (committed or 0))


class RewindingConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """``seek_to_committed`` that also rewinds partitions nobody has committed yet,
    and fetches shaped by the app's :class:`FetchShape` (then, if adaptive, by the rate)."""

    worker_consumer: Any = None

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        fetch: FetchShape = getattr(self.app, "fetch", FetchShape())
        # Faust passes no fetch_min_bytes and a fixed fetch_max_wait_ms; the consumer
        # hands these to its fetcher when it starts.
        consumer._fetch_min_bytes = fetch.min_bytes
        consumer._fetch_max_wait_ms = fetch.max_wait_ms
        self.worker_consumer = consumer
        return consumer

    def shape_fetches(self, shape: FetchShape) -> None:
        """The shape of the next fetch requests (read by aiokafka's fetcher per request)."""
        fetcher = getattr(self.worker_consumer, "_fetcher", None)
        if fetcher is not None:
            fetcher._fetch_min_bytes = shape.min_bytes
            fetcher._fetch_max_wait_ms = shape.max_wait_ms

    async def seek_to_committed(self) -> Mapping[Any, int]:
        result: Mapping[Any, int] = await self.call_thread(self._seek_to_committed_or_start)
        return result

    async def _seek_to_committed_or_start(self) -> dict[Any, int | None]:
        client = self._ensure_consumer()
        consumer = cast("StrictConsumer", self.consumer)
        committed: dict[Any, int | None] = dict(await client.seek_to_committed())
        streams = {tp: o for tp, o in committed.items() if not consumer.is_changelog(tp)}
        fresh = [tp for tp, offset in streams.items() if not offset]
        if fresh:
            await client.seek_to_beginning(*fresh)
            for tp in fresh:
                committed[tp] = streams[tp] = await client.position(tp)
        consumer.note_start_offsets(streams)
        return committed


class StrictConsumer(faust_aiokafka.Consumer):
    """Commits only contiguous acked offsets, re-reads from any lasting hole, drains on revoke.

    It also knows how far behind in time each source partition is
    (:mod:`streams.behind`), for the ``streams_time_behind_seconds`` metric.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._start_offsets: dict[Any, int] = {}
        self._holes = HoleWatch(HOLE_GRACE_S)
        self._tails = HoleWatch(TAIL_GRACE_S)
        self._behind = TimeBehind()
        self._sources: frozenset[Any] = frozenset()  # assigned partitions that are not changelogs
        self.offset_resets: Counter[tuple[str, int]] = Counter()
        app: Any = self.app
        fixed: FetchShape = getattr(app, "fetch", FetchShape())
        adapt_s = float(getattr(app, "fetch_adapt_wait_s", 0.0))
        # A fixed shape (STREAMS_FETCH_MIN_BYTES above 1) is kept; else the rate decides.
        self._fetch = AdaptiveFetch(adapt_s) if fixed.min_bytes <= 1 and adapt_s > 0 else None

    @property
    def fence(self) -> Fence:
        app: Any = self.app
        fence: Fence = app.fence
        return fence

    def is_changelog(self, tp: Any) -> bool:
        return bool(self._is_changelog_tp(tp))

    def committed_offsets(self) -> Mapping[Any, int | None]:
        """The offset committed (or started from) per assigned partition, as Faust knows it."""
        return {tp: self._floor(tp) for tp in self.assignment()}

    def _new_consumer_thread(self) -> RewindingConsumerThread:
        return RewindingConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def note_start_offsets(self, offsets: Mapping[Any, int | None]) -> None:
        """Where each assigned partition starts (its commit, or its beginning)."""
        self._start_offsets = {tp: o for tp, o in offsets.items() if o is not None}
        for tp in offsets:
            self._holes.forget(tp)
            self._tails.forget(tp)
        self._sources = frozenset(offsets)

    def _floor(self, tp: Any) -> int | None:
        floor: int | None = self._committed_offset.get(tp)
        return self._start_offsets.get(tp) if floor is None else floor

    def _to_message(self, tp: Any, record: Any) -> Any:
        message = super()._to_message(tp, record)
        if record.timestamp is not None and tp in self._sources:
            self._behind.delivered(tp, record.offset, record.timestamp / 1000.0)
        if self._fetch is not None:
            self._fetch.delivered(record.serialized_value_size or 0)
            self._adapt_fetch()
        return message

    def _adapt_fetch(self) -> None:
        fetch = self._fetch
        shape = fetch.tick(time.monotonic()) if fetch is not None else None
        if shape is not None:
            cast(RewindingConsumerThread, self._thread).shape_fetches(shape)

    def time_behind(self, now: float) -> Iterator[tuple[Any, float]]:
        """(partition, age of its oldest unprocessed message) for each assigned source partition."""
        sources = self._sources & set(self.assignment())
        self._behind.keep_only(sources)  # here, on the event loop, not in the consumer thread
        for tp in sorted(sources):
            committed = self._floor(tp)
            lag = messages_behind(self, tp, committed)
            if lag is not None:
                yield tp, self._behind.seconds(tp, lag, committed, now)

    # -- rebalance: drain, commit, then let Faust revoke; close what it let go --------

    async def on_partitions_revoked(self, revoked: Any) -> None:
        app: Any = self.app
        sources = {tp for tp in revoked if not self.is_changelog(tp)}
        bound = float(getattr(app, "drain_bound_s", 10.0))
        fenced = await self.fence.revoke(sources, bound)
        if fenced:
            log.warning(
                "%d batch(es) of revoked partitions still running after %.0fs are fenced: "
                "they write nothing more, and the partitions' next owner repeats them",
                len(fenced),
                bound,
            )
        if sources:
            try:  # what the drained batches acked, before the offsets are forgotten
                await asyncio.wait_for(self._commit_now(sources), bound)
            except Exception as exc:  # noqa: BLE001 - the next owner repeats what was not
                log.warning("commit on revoke failed (%s)", type(exc).__name__)
        handles = held_handles(app.tables.values(), revoked)
        await super().on_partitions_revoked(revoked)
        close_released(handles)

    async def _commit_now(self, tps: set[Any]) -> None:
        """Commit ``tps``' acked offsets; a periodic commit under way would only be waited for."""
        if not await self.commit(tps):
            await self.commit(tps)

    async def on_partitions_assigned(self, assigned: Any, generation_id: int = 0) -> None:
        self.fence.assign(assigned)
        await super().on_partitions_assigned(assigned, generation_id)

    # -- commit: contiguous acks only; a failed commit changes nothing ------------------

    async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
        """Faust would count the skipped offsets as acked; on our topics a gap is a loss."""

    def _new_offset(self, tp: Any) -> int | None:
        acked: list[int] = self._acked[tp]
        result = committable(acked, self._floor(tp))
        self._holes.observe(tp, result.hole, time.monotonic())
        if result.offset is None:
            return None
        batch = acked[: result.run]
        del acked[: result.run]
        self._acked_index[tp].difference_update(batch)
        self._behind.committed(tp, result.offset)
        return result.offset

    async def _commit_offsets(self, offsets: Mapping[Any, int], *args: Any, **kwargs: Any) -> bool:
        before = {tp: self._committed_offset.get(tp) for tp in offsets}
        did_commit: bool = await super()._commit_offsets(offsets, *args, **kwargs)
        if not did_commit:  # Faust moved its committed offsets anyway: put them back
            for tp, offset in offsets.items():
                if self._committed_offset.get(tp) == offset:
                    self._committed_offset[tp] = before[tp]
        return did_commit

    async def commit(self, *args: Any, **kwargs: Any) -> bool:
        committed: bool = await super().commit(*args, **kwargs)
        self._adapt_fetch()  # also when idle: no messages, the rate falls to 0
        app: Any = self.app
        if not (app.rebalancing or app.in_recovery or self.should_stop):
            now = time.monotonic()
            self._watch_tails(now)
            await self._reread([*self._holes.due(now), *self._tails.due(now)])
        return committed

    def _watch_tails(self, now: float) -> None:
        """Note partitions whose end stays past their commit while the stage sits idle."""
        fence = self.fence
        if fence.busy or now - fence.last_taken < TAIL_GRACE_S:
            for tp in list(self._sources):
                self._tails.forget(tp)
            return
        for tp in self._sources & set(self.assignment()):
            floor = self._floor(tp)
            lag = messages_behind(self, tp, floor)
            waiting = floor is not None and not self._acked.get(tp) and bool(lag)
            self._tails.observe(tp, floor if waiting else None, now)

    async def _reread(self, due: list[tuple[Any, int]]) -> None:
        assigned = self.assignment()
        for tp, offset in due:
            if tp not in assigned:
                self._holes.forget(tp)
                self._tails.forget(tp)
                continue
            try:
                start = (await self.earliest_offsets(tp)).get(tp)
                if start is not None and offset < start:
                    self._resume_from_log_start(tp, offset, start)
                    if start in self._acked.get(tp, ()):
                        continue  # read from the log start already: the commit can move now
                    offset = start
                log.warning(
                    "offsets of %s from %d were read past without being handled; "
                    "reading the partition again from there",
                    tp,
                    offset,
                )
                await self.seek_wait({tp: offset})  # in the consumer thread, so the fetcher sees it
            except Exception:  # retried after the next grace period
                log.warning("could not seek %s back to %d; will retry", tp, offset, exc_info=True)

    def _resume_from_log_start(self, tp: Any, committed: int, start: int) -> None:
        log.warning(
            "the committed offset %d of %s is older than the log start %d (retention deleted "
            "what the stage had not read): resuming from the log start",
            committed,
            tp,
            start,
        )
        self.offset_resets[(tp.topic, tp.partition)] += 1
        self._committed_offset[tp] = start
        self._holes.forget(tp)
        self._tails.forget(tp)


# -- table stores, a batch at a time --------------------------------------------


def is_memory(table: Any) -> bool:
    return isinstance(table.data, memory_store.Store)


def partition_db(table: Any, partition: int) -> Any:
    """The RocksDB of ``partition`` as Faust opened it for the current assignment, or None.

    Never opens one: a partition not held here is left to its owner and the changelog.
    """
    return table.data._dbs.get(partition)


def open_partition_db(table: Any, partition: int) -> Any:
    """Open ``partition``'s RocksDB as Faust's assignment does (tools and tests only)."""
    return table.data._db_for_partition(partition)


def close_all(table: Any) -> None:
    """Close every RocksDB of ``table`` this process opened, releasing their locks."""
    dbs = table.data._dbs
    for db in dbs.values():
        db.close()
    dbs.clear()


def offset_key(table: Any) -> bytes:
    """Where a RocksDB store keeps the changelog offset Faust's recovery resumes after."""
    key: bytes = table.data.offset_key
    return key


def memory_put(table: Any, key: str, value: Any, partition: int) -> None:
    """Set ``key`` in a memory store as Faust's own write does (its partition remembered)."""
    store = table.data
    store.data[key] = value
    store._key_partition[key] = partition


def memory_delete(table: Any, key: str) -> None:
    store = table.data
    store.data.pop(key, None)
    store._key_partition.pop(key, None)


def memory_get(table: Any, key: str) -> Any:
    return table.data.data.get(key)


Handles = list[tuple[Any, int, Any]]  # (store, partition, db)


def held_handles(tables: Iterable[Any], tps: Iterable[Any]) -> Handles:
    """The open RocksDB handles of ``tps``' changelog partitions, before a revoke."""
    handles: Handles = []
    wanted = list(tps)
    for table in tables:
        store = table.data
        if not isinstance(store, rocksdb_store.Store):
            continue
        topics = table.changelog_topic.topics
        for tp in wanted:
            db = store._dbs.get(tp.partition) if tp.topic in topics else None
            if db is not None:
                handles.append((store, tp.partition, db))
    return handles


def close_released(handles: Handles) -> int:
    """Close each handle Faust no longer holds (revoked); return how many were closed."""
    closed = 0
    for store, partition, db in handles:
        if store._dbs.get(partition) is not db:
            db.close()
            closed += 1
    return closed


class StrictTransport(faust_aiokafka.Transport):
    Consumer = StrictConsumer


class PipelineApp(faust.App):
    """A Faust app whose consumer is :class:`StrictConsumer`, fetching as ``fetch`` says."""

    fetch = FetchShape()  # fixed, or where the adaptive shape starts
    fetch_adapt_wait_s = 0.0  # > 0: fetches gather this long's worth at high rates
    drain_bound_s = 10.0  # how long a revoke or a stop waits for a batch in flight

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fence = Fence()
        self._drains: list[Drain] = []

    def on_drain(self, drain: Drain) -> None:
        """Run ``drain(bound_s)`` when the app stops, before Faust's own stop."""
        self._drains.append(drain)

    async def on_stop(self) -> None:
        for drain in self._drains:
            try:
                await drain(self.drain_bound_s)
            except Exception:  # the stop goes on; the next owner repeats
                log.exception("drain at stop failed")
        await super().on_stop()

    def _new_transport(self) -> StrictTransport:
        return StrictTransport(self.conf.broker_consumer, self)


class BoundedStopWorker(faust.Worker):
    """Ends the process ``shutdown_timeout_s`` after SIGTERM/SIGINT, stopped or not."""

    def __init__(self, app: faust.App, *, shutdown_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.shutdown_timeout_s = shutdown_timeout_s
        self._watchdog: threading.Timer | None = None

    def _schedule_shutdown(self, sig: signal.Signals) -> None:  # mode's hook for SIGTERM/INT
        super()._schedule_shutdown(sig)
        if self._watchdog is None:
            self._watchdog = threading.Timer(self.shutdown_timeout_s, self._give_up)
            self._watchdog.daemon = True
            self._watchdog.start()

    def _give_up(self) -> None:
        log.error(
            "shutdown did not finish in %.0fs (is Kafka reachable?); exiting without it",
            self.shutdown_timeout_s,
        )
        logging.shutdown()
        os._exit(1)
