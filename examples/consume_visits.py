"""A platform team's consumer of ``spakinect.visits`` — copy it and change ``handle``.

* Use your own consumer group: every group gets every message.
* Commit only after your work is done (at-least-once), and
* dedupe by ``event_id``: after a worker crash the pipeline can repeat a message,
  and so can your own restart between handling and committing.
* ``disposition`` tells you what the event means: ``apply`` (newest for its
  visit), ``stale`` (older than one already seen) or ``unsuccessful``.

    python -m examples.consume_visits --bootstrap 127.0.0.1:9092 --group my-team
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer

Handler = Callable[[dict[str, Any]], Awaitable[None]]


class RecentIds:
    """The last ``size`` event ids seen: enough to drop the pipeline's rare repeats."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._ids: OrderedDict[str, None] = OrderedDict()

    def seen(self, event_id: str) -> bool:
        if event_id in self._ids:
            self._ids.move_to_end(event_id)
            return True
        self._ids[event_id] = None
        if len(self._ids) > self.size:
            self._ids.popitem(last=False)
        return False


async def consume(
    bootstrap: str, topic: str, group: str, handle: Handler, stop_after: int | None = None
) -> int:
    """Hand each new envelope to ``handle``; return how many were handled."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    recent, handled = RecentIds(), 0
    await consumer.start()
    try:
        async for message in consumer:
            envelope = json.loads(message.value)
            if not recent.seen(envelope["event_id"]):
                await handle(envelope)
                handled += 1
            await consumer.commit()  # after the work: a crash repeats, never skips
            if stop_after is not None and handled >= stop_after:
                break
    finally:
        await consumer.stop()
    return handled


async def print_visit(envelope: dict[str, Any]) -> None:
    data = envelope["payload"]["data"]
    print(
        envelope["disposition"],
        envelope["event_id"],
        data.get("location_id"),
        "approved:",
        data.get("approved_treatments"),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="spakinect.visits")
    parser.add_argument("--group", required=True)
    args = parser.parse_args()
    asyncio.run(consume(args.bootstrap, args.topic, args.group, print_visit))


if __name__ == "__main__":
    main()
