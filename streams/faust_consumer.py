"""Faust's aiokafka consumer, made strict so a rebalance can never skip a message.

faust-streaming (0.15) loses messages around rebalances in two ways, which
a worker killed mid-load (``tests/integration/test_scale_out.py``) shows:

1. After a rebalance Faust seeks stream partitions to their committed
   offsets, but aiokafka's ``seek_to_committed`` does nothing for a
   partition with no committed offset (or offset 0): records already
   fetched are dropped from Faust's buffers while the position stays after
   them, and the next commit jumps over them.
2. A stale fetch delivered after the seek moves Faust's read offset past
   messages that are then dropped as "already read"; Faust fills such gaps
   in as if acked, and its commit check tolerates a one-offset hole.

So this consumer rewinds partitions without a commit to their beginning
(``auto_offset_reset`` is earliest); commits only through unbroken runs of
acked offsets (:mod:`streams.offsets`); never treats a gap as acked (our
source topics have no transactions or compaction, so offsets are
contiguous); and when a hole persists, seeks back to it so the skipped
message is delivered again.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, cast

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.behind import TimeBehind
from streams.offsets import HoleWatch, committable

log = logging.getLogger(__name__)
HOLE_GRACE_S = 10.0


def messages_behind(consumer: Any, tp: Any, committed: int | None) -> int | None:
    """Messages of ``tp`` after offset ``committed``; None while the partition's end is unknown."""
    try:
        highwater = consumer.highwater(tp)
    except Exception:  # noqa: BLE001 - partition metadata not known yet
        return None
    if highwater is None:
        return None
    return max(0, int(highwater) - (committed or 0))


@dataclass(frozen=True, slots=True)
class FetchShape:
    """How long the broker may hold a fetch to fill it (Kafka's fetch.min.bytes/max.wait.ms).

    Faust asks for any one byte (and waits up to 1.5 s only when there is none), so
    at a webhook's pace every fetch carries an event or two, and each event costs a
    fetch request in the broker and a fetch round in the worker. Letting the broker
    gather ``min_bytes`` for up to ``max_wait_ms`` batches them at the price of that
    wait per stage, and of a fetch every ``max_wait_ms`` while idle;
    ``FetchShape(1, 1500)``, the default, is Faust's own behaviour.
    """

    min_bytes: int = 1
    max_wait_ms: int = 1500


class RewindingConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """``seek_to_committed`` that also rewinds partitions nobody has committed yet,
    and fetches shaped by the app's :class:`FetchShape`."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        fetch: FetchShape = getattr(self.app, "fetch", FetchShape())
        # Faust passes no fetch_min_bytes and a fixed fetch_max_wait_ms; the consumer
        # hands these to its fetcher when it starts (pinned in tests/unit/test_faust_app.py).
        consumer._fetch_min_bytes = fetch.min_bytes
        consumer._fetch_max_wait_ms = fetch.max_wait_ms
        return consumer

    async def seek_to_committed(self) -> Mapping[Any, int]:
        result: Mapping[Any, int] = await self.call_thread(self._seek_to_committed_or_start)
        return result

    async def _seek_to_committed_or_start(self) -> dict[Any, int | None]:
        client = self._ensure_consumer()
        consumer = cast("StrictConsumer", self.consumer)
        committed: dict[Any, int | None] = dict(await client.seek_to_committed())
        streams = {tp: o for tp, o in committed.items() if not consumer._is_changelog_tp(tp)}
        fresh = [tp for tp, offset in streams.items() if not offset]
        if fresh:
            await client.seek_to_beginning(*fresh)
            for tp in fresh:
                committed[tp] = streams[tp] = await client.position(tp)
        consumer.note_start_offsets(streams)
        return committed


class StrictConsumer(faust_aiokafka.Consumer):
    """Commits only contiguous acked offsets and re-reads from any lasting hole.

    It also knows how far behind in time each source partition is
    (:mod:`streams.behind`), for the ``streams_time_behind_seconds`` metric.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._start_offsets: dict[Any, int] = {}
        self._holes = HoleWatch(HOLE_GRACE_S)
        self._behind = TimeBehind()
        self._sources: frozenset[Any] = frozenset()  # assigned partitions that are not changelogs

    def _new_consumer_thread(self) -> RewindingConsumerThread:
        return RewindingConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def note_start_offsets(self, offsets: Mapping[Any, int | None]) -> None:
        """Where each assigned partition starts (its commit, or its beginning)."""
        self._start_offsets = {tp: o for tp, o in offsets.items() if o is not None}
        for tp in offsets:
            self._holes.forget(tp)
        self._sources = frozenset(offsets)

    def _to_message(self, tp: Any, record: Any) -> Any:
        message = super()._to_message(tp, record)
        if record.timestamp is not None and tp in self._sources:
            self._behind.delivered(tp, record.offset, record.timestamp / 1000.0)
        return message

    def time_behind(self, now: float) -> Iterator[tuple[Any, float]]:
        """(partition, age of its oldest unprocessed message) for each assigned source partition."""
        sources = self._sources & set(self.assignment())
        self._behind.keep_only(sources)  # here, on the event loop, not in the consumer thread
        for tp in sorted(sources):
            committed = self._committed_offset.get(tp)
            if committed is None:
                committed = self._start_offsets.get(tp)
            lag = messages_behind(self, tp, committed)
            if lag is not None:
                yield tp, self._behind.seconds(tp, lag, committed, now)

    async def _add_gap(self, tp: Any, offset_from: int, offset_to: int) -> None:
        """Faust would count the skipped offsets as acked; on our topics a gap is a loss."""

    def _new_offset(self, tp: Any) -> int | None:
        acked: list[int] = self._acked[tp]
        floor = self._committed_offset.get(tp)
        if floor is None:
            floor = self._start_offsets.get(tp)
        result = committable(acked, floor)
        self._holes.observe(tp, result.hole, time.monotonic())
        if result.offset is None:
            return None
        batch = acked[: result.run]
        del acked[: result.run]
        self._acked_index[tp].difference_update(batch)
        self._behind.committed(tp, result.offset)
        return result.offset

    async def commit(self, *args: Any, **kwargs: Any) -> bool:
        committed: bool = await super().commit(*args, **kwargs)
        await self._reread_lasting_holes()
        return committed

    async def _reread_lasting_holes(self) -> None:
        assigned = self.assignment()
        for tp, offset in self._holes.due(time.monotonic()):
            if tp not in assigned:
                self._holes.forget(tp)
                continue
            log.warning(
                "offset %d of %s was skipped by the consumer; reading the partition again from it",
                offset,
                tp,
            )
            try:
                await self.seek_wait({tp: offset})  # in the consumer thread, so the fetcher sees it
            except Exception:  # retried after the next grace period
                log.warning("could not seek %s back to %d; will retry", tp, offset, exc_info=True)


class StrictTransport(faust_aiokafka.Transport):
    Consumer = StrictConsumer


class PipelineApp(faust.App):
    """A Faust app whose consumer is :class:`StrictConsumer`, fetching as ``fetch`` says."""

    fetch = FetchShape()

    def _new_transport(self) -> StrictTransport:
        return StrictTransport(self.conf.broker_consumer, self)
