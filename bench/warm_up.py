"""Warm the broker's JVM before the first measured variant.

Kafka's produce, fetch and commit paths run interpreted until the JIT has
compiled them: measured on a fresh broker, the first variant paid ~2.3x the
broker CPU per event of a variant run after it (the same tree, 200k events:
0.039 core-ms cold, 0.017 warm), which made before/after ratios depend on the
order the variants ran in. One untimed pass over the same messages — produced,
then read back by a consumer group that commits — compiles them for everyone.
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
