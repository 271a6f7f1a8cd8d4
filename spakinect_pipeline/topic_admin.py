"""Create the pipeline's topics with the partitions, replication and retention of DESIGN.md."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, for_code

from events.topics import Topics
from spakinect_pipeline.config import KafkaSettings

log = logging.getLogger(__name__)


def topic_config(kafka: KafkaSettings) -> dict[str, str]:
    """Retention bounds how long patient data stays; min ISR makes acks=all mean it."""
    return {
        "retention.ms": str(kafka.retention_ms),
        "min.insync.replicas": str(min(kafka.min_insync_replicas, kafka.replication_factor)),
        "cleanup.policy": "delete",
    }


def changelog_config(kafka: KafkaSettings) -> dict[str, str]:
    """Table changelogs are compacted: the latest value per key is the state."""
    return {
        "cleanup.policy": "compact",
        "min.insync.replicas": str(min(kafka.min_insync_replicas, kafka.replication_factor)),
    }


async def ensure_topics(
    kafka: KafkaSettings,
    names: list[str] | None = None,
    config: dict[str, str] | None = None,
) -> list[str]:
    """Create every missing topic; return the names created (existing ones are left alone).

    By default the pipeline's own topics with :func:`topic_config`; a stage
    passes its table changelogs with :func:`changelog_config`.
    """
    topics = names if names is not None else Topics(kafka.topic_prefix).all()
    admin = AIOKafkaAdminClient(**kafka.client_options(), request_timeout_ms=15_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [name for name in topics if name not in existing]
        if not missing:
            return []
        config = config if config is not None else topic_config(kafka)
        new = [
            NewTopic(name, kafka.partitions, kafka.replication_factor, topic_configs=config)
            for name in missing
        ]
        response = await admin.create_topics(new, timeout_ms=30_000)
        for name, code, *_ in response.topic_errors:
            # Another process may have won the race: "already exists" is fine.
            if code not in (0, TopicAlreadyExistsError.errno):
                raise for_code(code)(f"cannot create topic {name}")
        log.info("created topics: %s", ", ".join(missing))
        return missing
    finally:
        await admin.close()
