"""A platform team's consumer of ``spakinect.visits`` — copy it and change ``handle``.

* Use your own consumer group: every group gets every message.
* Commit only after your work is done (at-least-once), and
* dedupe by ``event_id``: after a worker crash the pipeline can repeat a message,
  and so can your own restart between handling and committing.
* ``disposition`` tells you what the event means: ``apply`` (newest for its
  visit), ``stale`` (older than one already seen) or ``unsuccessful``.
* ``envelope_version`` 2: the paths listed in ``sealed`` (the patient's name and
  email) hold ``pk1:`` ciphertext. Without the master key they stay opaque, the
  rest reads as before. With it (``PHI_KAFKA_MASTER_KEYS``, only for teams
  entitled to patient data), they are opened; a forgotten patient's come back
  ``null`` with ``"forgotten": true`` (docs/patient-data-on-kafka.md).

    python -m examples.consume_visits --bootstrap 127.0.0.1:9092 --group my-team
    PHI_KAFKA_MASTER_KEYS=... python -m examples.consume_visits --group my-team --open-sealed
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer

from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.phi.kafka_client import SealedFields

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


REFRESH_S = 30.0  # how soon a forget (a destroyed key) reaches this consumer


async def consume(
    bootstrap: str,
    topic: str,
    group: str,
    handle: Handler,
    stop_after: int | None = None,
    fields: SealedFields | None = None,
) -> int:
    """Hand each new envelope to ``handle`` (sealed paths opened when ``fields`` is given)."""
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    recent, handled, refreshed = RecentIds(), 0, 0.0
    await consumer.start()
    try:
        async for message in consumer:
            envelope = json.loads(message.value)
            if fields is not None and envelope.get("sealed"):
                if time.monotonic() - refreshed > REFRESH_S:
                    await fields.refresh()  # new keys, and tombstones of forgotten patients
                    refreshed = time.monotonic()
                envelope = await fields.open_latest(envelope)
            if not recent.seen(envelope["event_id"]):
                await handle(envelope)
                handled += 1
            await consumer.commit()  # after the work: a crash repeats, never skips
            if stop_after is not None and handled >= stop_after:
                break
    finally:
        await consumer.stop()
    return handled


def patient_fields(envelope: dict[str, Any]) -> str:
    """plain (version 1), sealed (opaque to us), opened or forgotten."""
    if envelope.get("forgotten"):
        return "forgotten"
    if "forgotten" in envelope:
        return "opened"
    return "sealed" if envelope.get("sealed") else "plain"


async def print_visit(envelope: dict[str, Any]) -> None:
    data = envelope["payload"]["data"]
    print(
        envelope["disposition"],
        envelope["event_id"],
        data.get("location_id"),
        "approved:",
        data.get("approved_treatments"),
        "patient:",
        patient_fields(envelope),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default="127.0.0.1:9092")
    parser.add_argument("--topic", default="spakinect.visits")
    parser.add_argument("--group", required=True)
    parser.add_argument("--topic-prefix", default="spakinect.", help="KAFKA_TOPIC_PREFIX")
    parser.add_argument(
        "--open-sealed", action="store_true", help="open sealed fields with PHI_KAFKA_MASTER_KEYS"
    )
    args = parser.parse_args()
    fields = None
    if args.open_sealed:
        kafka = KafkaSettings(bootstrap_servers=[args.bootstrap], topic_prefix=args.topic_prefix)
        fields = SealedFields.from_master_keys(kafka, os.environ["PHI_KAFKA_MASTER_KEYS"])
    asyncio.run(consume(args.bootstrap, args.topic, args.group, print_visit, fields=fields))


if __name__ == "__main__":
    main()
