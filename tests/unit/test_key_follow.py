"""The key follower without a broker (a fake consumer over a list): after a broker error
it resumes where it stopped, so a tombstone written meanwhile is applied, not skipped."""

import asyncio
from dataclasses import dataclass
from typing import Any

from aiokafka.errors import KafkaConnectionError

from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.phi.key_follow import KeyFollower


@dataclass
class Message:
    key: bytes
    value: bytes | None
    offset: int


class FakeConsumer:
    """One partition's log; ``outage`` runs once, then the next ``end_offsets`` fails."""

    def __init__(self, log: list[Message], outage: Any = None) -> None:
        self.log = log
        self.outage = outage
        self.pos = 0
        self.reads = 0

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def assign(self, partitions: list[Any]) -> None:
        self.tp = partitions[0]

    async def seek_to_end(self, tp: Any) -> None:
        self.pos = len(self.log)

    def seek(self, tp: Any, offset: int) -> None:
        self.pos = offset

    async def position(self, tp: Any) -> int:
        return self.pos

    async def end_offsets(self, tps: list[Any]) -> dict[Any, int]:
        self.reads += 1
        if self.outage is not None and self.reads == 2:
            self.outage()
            raise KafkaConnectionError("broker gone")
        return {self.tp: len(self.log)}

    async def getmany(self, tp: Any, timeout_ms: int) -> dict[Any, list[Message]]:
        batch, self.pos = self.log[self.pos :], len(self.log)
        return {tp: batch}


async def test_a_tombstone_written_while_the_broker_was_away_is_applied_on_reconnect() -> None:
    log = [Message(b"k1:subject-a:key1", b"wrapped", 0)]
    evicted: list[str] = []
    back = asyncio.Event()

    def forget() -> None:  # the forget's tombstone lands while the follower is cut off
        log.append(Message(b"k1:subject-a:key1", None, 1))

    consumers = [FakeConsumer(log, outage=forget), FakeConsumer(log)]

    def next_consumer() -> FakeConsumer:
        if len(consumers) == 1:
            back.set()
        return consumers.pop(0)

    kafka = KafkaSettings(bootstrap_servers=["127.0.0.1:1"])
    follower = KeyFollower(
        kafka, evicted.append, interval_s=0, create_topic=False, consumer=next_consumer
    )
    task = asyncio.create_task(follower.run())
    try:
        await asyncio.wait_for(back.wait(), 5)  # reconnected ...
        for _ in range(100):  # ... and given turns to read (a bound in turns, not in time)
            if evicted:
                break
            await asyncio.sleep(0)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    assert evicted == ["k1:subject-a:key1"]
    assert follower.caught_up is not None
