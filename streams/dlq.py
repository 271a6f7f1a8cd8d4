"""Dead-letter publishing: the original message plus headers that say what failed where.

Error texts are class names and codes, never exception messages, which can
echo patient data (a database error quoting a value, for example).
"""

from __future__ import annotations

import asyncio
import logging

from events.messages import SourceMessage, dlq_headers
from spakinect_pipeline.publisher import KafkaPublisher, PublishFailed

log = logging.getLogger(__name__)


class DeadLetters:
    """Sends failed messages to the DLQ, retrying until Kafka takes them (never drops)."""

    def __init__(self, publisher: KafkaPublisher, topic: str, stage: str) -> None:
        self.publisher = publisher
        self.topic = topic
        self.stage = stage
        self.sent = 0

    async def send(
        self, source: SourceMessage, *, error: str, error_type: str, attempts: int = 1
    ) -> None:
        headers = dlq_headers(
            source, error=error, error_type=error_type, stage=self.stage, attempts=attempts
        )
        delay = 0.5
        while True:
            try:
                await self.publisher.publish(
                    self.topic, source.value or b"", key=source.key, headers=headers, timeout=10
                )
                break
            except PublishFailed:
                log.warning("DLQ write failed; retrying in %.1fs", delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30)
        self.sent += 1
        log.warning(
            "message dead-lettered",
            extra={
                "stage": self.stage,
                "error_type": error_type,
                "source_topic": source.topic,
                "source_partition": source.partition,
                "source_offset": source.offset,
            },
        )
