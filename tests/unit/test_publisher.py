"""KafkaPublisher's budget and self-healing, with producers that start slowly, hang or break.

The fakes stand in for aiokafka's producer at the one seam the publisher has
(``start_producer``); the real producer against real brokers is covered by
the ingress outage and leader-move integration tests.
"""

from __future__ import annotations

import asyncio
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, OutOfOrderSequenceNumber

from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.publisher import KafkaPublisher, Message, PublishFailed, Written

BUDGET_S = 0.3
SLACK_S = 0.15  # the event loop's own scheduling; far below the contract's 1 s


class FakeProducer:
    """Acks every send at once, or fails it with ``fail_with``, or never acks (``hang``)."""

    def __init__(
        self, fail_with: BaseException | None = None, hang: bool = False, fail_after: float = 0.0
    ) -> None:
        self.fail_with = fail_with
        self.fail_after = fail_after
        self.hang = hang
        self.sent: list[bytes] = []
        self.stopped = False
        self.stop_hangs = False

    async def send(
        self,
        topic: str,
        value: bytes,
        key: bytes | None,
        headers: list[tuple[str, bytes]],
        partition: int | None = None,
    ) -> asyncio.Future[Any]:
        ack: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail_with is not None:
            asyncio.get_running_loop().call_later(
                self.fail_after, ack.set_exception, self.fail_with
            )
        elif not self.hang:
            self.sent.append(value)
            ack.set_result(
                SimpleNamespace(topic=topic, partition=partition or 0, offset=len(self.sent) - 1)
            )
        return ack

    async def stop(self) -> None:
        self.stopped = True
        if self.stop_hangs:
            await asyncio.Event().wait()


class Starts:
    """A producer factory: each start takes ``delays[i]`` seconds (None: never finishes)."""

    def __init__(self, *producers: FakeProducer, delays: tuple[float | None, ...] = ()) -> None:
        self.producers = list(producers)
        self.delays = list(delays)
        self.begun = 0

    async def __call__(self) -> AIOKafkaProducer:
        index = self.begun
        self.begun += 1
        delay = self.delays[index] if index < len(self.delays) else 0.0
        if delay is None:
            await asyncio.Event().wait()
        await asyncio.sleep(delay or 0)
        return cast(AIOKafkaProducer, self.producers[index])


def publisher(starts: Starts, start_timeout_s: float = 10.0) -> KafkaPublisher:
    return KafkaPublisher(
        KafkaSettings(bootstrap_servers=["127.0.0.1:1"]),
        client_id="test",
        request_timeout_ms=int(start_timeout_s * 1000),
        start_producer=starts,
    )


async def timed(coro: Any) -> tuple[BaseException | None, float]:
    started = time.monotonic()
    try:
        await coro
    except PublishFailed as exc:
        return exc, time.monotonic() - started
    return None, time.monotonic() - started


async def test_callers_waiting_for_a_slow_start_answer_within_their_own_budget() -> None:
    starts = Starts(FakeProducer(), delays=(2.0,))
    pub = publisher(starts)
    results = await asyncio.gather(
        *(timed(pub.publish("t", b"v", key=b"k", timeout=BUDGET_S)) for _ in range(20))
    )
    assert all(isinstance(error, PublishFailed) for error, _ in results)
    assert max(seconds for _, seconds in results) < BUDGET_S + SLACK_S
    assert starts.begun == 1  # one start shared by every caller, not cancelled by their timeouts
    await pub.stop()


async def test_a_start_the_callers_gave_up_on_still_serves_the_next_caller() -> None:
    producer = FakeProducer()
    starts = Starts(producer, delays=(0.5,))
    pub = publisher(starts)
    error, _ = await timed(pub.publish("t", b"first", key=None, timeout=0.1))
    assert isinstance(error, PublishFailed)
    await asyncio.sleep(0.6)
    await pub.publish("t", b"second", key=None, timeout=BUDGET_S)
    assert producer.sent == [b"second"]
    assert starts.begun == 1
    await pub.stop()


async def test_a_start_that_never_ends_is_dropped_and_the_next_caller_starts_afresh() -> None:
    healthy = FakeProducer()
    starts = Starts(FakeProducer(), healthy, delays=(None, 0.0))
    pub = publisher(starts, start_timeout_s=0.4)
    error, seconds = await timed(pub.publish("t", b"v", key=None, timeout=BUDGET_S))
    assert isinstance(error, PublishFailed)
    assert seconds < BUDGET_S + SLACK_S
    await asyncio.sleep(0.2)  # the stuck start reaches its own bound
    await pub.publish("t", b"v", key=None, timeout=BUDGET_S)
    assert healthy.sent == [b"v"]
    assert starts.begun == 2
    await pub.stop()


async def test_a_start_that_fails_is_a_publish_failure_at_once() -> None:
    class Refused(Starts):
        async def __call__(self) -> AIOKafkaProducer:
            self.begun += 1
            raise KafkaConnectionError("no broker")

    pub = publisher(Refused())
    error, seconds = await timed(pub.publish("t", b"v", key=None, timeout=BUDGET_S))
    assert isinstance(error, PublishFailed)
    assert "KafkaConnectionError" in str(error)
    assert seconds < SLACK_S
    await pub.stop()


async def test_no_ack_within_the_budget_fails_without_dropping_the_producer() -> None:
    stalled = FakeProducer(hang=True)
    starts = Starts(stalled)
    pub = publisher(starts)
    error, seconds = await timed(pub.publish("t", b"v", key=None, timeout=BUDGET_S))
    assert isinstance(error, PublishFailed)
    assert BUDGET_S <= seconds < BUDGET_S + SLACK_S
    assert not stalled.stopped
    assert starts.begun == 1
    await pub.stop()


async def test_a_stuck_idempotent_producer_is_replaced_and_the_next_publish_succeeds() -> None:
    broken = FakeProducer(fail_with=OutOfOrderSequenceNumber())
    broken.stop_hangs = True  # closing it must not hold anyone's answer
    healthy = FakeProducer()
    starts = Starts(broken, healthy)
    pub = publisher(starts)
    error, seconds = await timed(pub.publish("t", b"v", key=None, timeout=BUDGET_S))
    assert isinstance(error, PublishFailed)
    assert "OutOfOrderSequenceNumber" in str(error)
    assert seconds < SLACK_S
    await pub.publish("t", b"again", key=None, timeout=BUDGET_S)
    assert healthy.sent == [b"again"]
    assert broken.stopped
    assert starts.begun == 2


async def test_late_failures_of_a_replaced_producer_leave_its_replacement_alone() -> None:
    broken = FakeProducer(fail_with=OutOfOrderSequenceNumber(), fail_after=0.2)
    replacement = FakeProducer()
    starts = Starts(broken, replacement)
    pub = publisher(starts)
    slow_failures = [
        asyncio.create_task(timed(pub.publish("t", b"v", key=None, timeout=BUDGET_S)))
        for _ in range(10)
    ]
    await asyncio.sleep(0.01)
    broken.fail_after = 0.0
    error, _ = await timed(pub.publish("t", b"v", key=None, timeout=BUDGET_S))
    assert isinstance(error, PublishFailed)  # drops the broken producer
    await pub.publish("t", b"after", key=None, timeout=BUDGET_S)  # starts the replacement
    assert all(
        isinstance(error, PublishFailed) for error, _ in await asyncio.gather(*slow_failures)
    )
    await pub.publish("t", b"still", key=None, timeout=BUDGET_S)
    assert replacement.sent == [b"after", b"still"]
    assert starts.begun == 2  # a burst of failures from the old producer costs one restart
    await pub.stop()


@pytest.mark.parametrize("delay", [0.0, 0.05])
async def test_publish_many_sends_in_order_with_one_budget(delay: float) -> None:
    producer = FakeProducer()
    pub = publisher(Starts(producer, delays=(delay,)))
    messages = [Message("t", bytes([i]), b"k", partition=i % 2) for i in range(5)]
    written = await pub.publish_many(messages, timeout=BUDGET_S)
    assert producer.sent == [bytes([i]) for i in range(5)]
    # Where each message went, in order, the explicit partitions kept.
    assert written == [Written("t", i % 2, i) for i in range(5)]
    await pub.stop()


async def test_stop_is_bounded_when_the_producer_never_finishes_flushing() -> None:
    stuck = FakeProducer(hang=True)
    stuck.stop_hangs = True
    pub = publisher(Starts(stuck), start_timeout_s=BUDGET_S)
    with pytest.raises(PublishFailed):
        await pub.publish_many([Message("t", b"v", None)], timeout=BUDGET_S)
    began = time.monotonic()
    await pub.stop()
    assert stuck.stopped
    assert time.monotonic() - began < BUDGET_S + SLACK_S
