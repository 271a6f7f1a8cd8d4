"""Warm the broker before the first measured variant.

One untimed pass over the same messages — produced to a topic of its own, then
read back by a consumer group that commits — so no variant pays for the
broker's first produce, fetch and commit work (a fresh JVM interprets them
until the JIT has compiled them). It does not remove every order effect: in
paired 200k drains the variant measured first still spent about twice the
broker CPU per event of the second (0.044-0.049 vs 0.019-0.025 core-ms,
whichever tree went first), so broker columns compare only between runs in
the same position; ``--baseline-first`` swaps the order for a second run.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import replace

from aiokafka import AIOKafkaConsumer

from bench.raw_events import preload
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.publisher import Message
from spakinect_pipeline.topic_admin import ensure_topics

WARM_UP_TOPIC = "bench-warm-up.raw"


async def warm_up_broker(kafka: KafkaSettings, messages: Sequence[Message]) -> float:
    """Produce ``messages`` to a topic of its own and consume them back; the seconds it took."""
    began = time.monotonic()
    await ensure_topics(kafka, [WARM_UP_TOPIC])
    await preload(kafka, [replace(m, topic=WARM_UP_TOPIC, partition=None) for m in messages])
    consumer = AIOKafkaConsumer(
        WARM_UP_TOPIC,
        **kafka.client_options(),
        group_id=f"bench-warm-up-{uuid.uuid4().hex[:6]}",
        auto_offset_reset="earliest",
        enable_auto_commit=True,
        auto_commit_interval_ms=200,
    )
    await consumer.start()
    try:
        seen = 0
        while seen < len(messages):
            batch = await consumer.getmany(timeout_ms=2000, max_records=2000)
            if not batch:
                break
            seen += sum(len(records) for records in batch.values())
    finally:
        await consumer.stop()
    return time.monotonic() - began
