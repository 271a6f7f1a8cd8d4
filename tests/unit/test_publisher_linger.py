"""The publisher's adaptive linger: a lone publish goes at once; under a busy rate, the
callers of one linger window are enqueued together, in one turn of the event loop, so
the producer's sender (woken by the first) sends them in one request."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.publisher import KafkaPublisher
from tests.unit.test_publisher import FakeProducer, Starts


class Turns:
    """Counts turns of the event loop (a task that yields once per turn)."""

    def __init__(self) -> None:
        self.now = 0

    async def run(self) -> None:
        while True:
            self.now += 1
            await asyncio.sleep(0)


class TurnRecording(FakeProducer):
    """Records the loop turn each message is enqueued in."""

    def __init__(self, turns: Turns) -> None:
        super().__init__()
        self.turns = turns
        self.enqueued_in: list[int] = []

    async def send(self, *args: Any, **kwargs: Any) -> asyncio.Future[Any]:
        self.enqueued_in.append(self.turns.now)
        return await super().send(*args, **kwargs)


@contextlib.asynccontextmanager
async def counting() -> AsyncIterator[tuple[KafkaPublisher, TurnRecording, Turns]]:
    turns = Turns()
    producer = TurnRecording(turns)
    pub = KafkaPublisher(
        KafkaSettings(bootstrap_servers=["127.0.0.1:1"]),
        client_id="test",
        linger_ms=100,
        start_producer=Starts(producer),
    )
    await pub.start()
    ticker = asyncio.create_task(turns.run())
    try:
        yield pub, producer, turns
    finally:
        ticker.cancel()
        await pub.stop()


async def test_a_lone_publish_is_enqueued_in_the_turn_it_was_called() -> None:
    async with counting() as (pub, producer, turns):
        called_in = turns.now
        await pub.publish("t", b"v", key=b"k", timeout=1)
        assert producer.enqueued_in == [called_in]  # no linger: nothing else is coming


async def test_under_a_busy_rate_callers_of_one_window_are_enqueued_in_one_turn() -> None:
    async with counting() as (pub, producer, _turns):
        # 100 publishes within a moment: a rate far above 2 per 100 ms.
        await asyncio.gather(*(pub.publish("t", b"v", key=b"k", timeout=1) for _ in range(100)))
        callers = []
        for _ in range(20):  # arriving one per turn, as requests do
            callers.append(asyncio.create_task(pub.publish("t", b"v", key=b"k", timeout=1)))
            await asyncio.sleep(0)
        await asyncio.gather(*callers)
        spread = producer.enqueued_in[100:]
        assert len(set(spread)) == 1, spread  # they waited for one shared tick, then all went
        assert len(producer.sent) == 120  # none lost or doubled


async def test_a_caller_cancelled_while_lingering_leaves_the_others_to_publish() -> None:
    async with counting() as (pub, producer, _turns):
        await asyncio.gather(*(pub.publish("t", b"v", key=b"k", timeout=1) for _ in range(50)))
        sent_before = len(producer.sent)
        doomed = asyncio.create_task(pub.publish("t", b"x", key=b"k", timeout=1))
        others = [
            asyncio.create_task(pub.publish("t", b"v", key=b"k", timeout=1)) for _ in range(5)
        ]
        await asyncio.sleep(0)
        doomed.cancel()
        await asyncio.gather(*others)
        assert len(producer.sent) == sent_before + 5
        assert b"x" not in producer.sent[sent_before:]
