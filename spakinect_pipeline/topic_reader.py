"""Read a whole topic from its beginning, without a consumer group: the DLQ and rejected tools.

No group means no committed offsets and no rebalances: each run sees every
message the topic still holds, and reading changes nothing for anyone else.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from aiokafka import AIOKafkaConsumer

from spakinect_pipeline.config import KafkaSettings


async def read_whole_topic(
    kafka: KafkaSettings, topic: str, idle_s: float
) -> AsyncGenerator[Any, None]:
    """Yield every record of ``topic`` (aiokafka's ConsumerRecord), until ``idle_s`` pass idle."""
    consumer = AIOKafkaConsumer(
        topic,
        **kafka.client_options(),
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        while batch := await consumer.getmany(timeout_ms=int(idle_s * 1000)):
            for records in batch.values():
                for record in records:
                    yield record
    finally:
        await consumer.stop()
