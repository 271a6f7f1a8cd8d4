"""Create the pipeline's topics: partitions, replication and retention as docs/contract.md says."""

from __future__ import annotations

import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from events.topics import Topics
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.kafka_problems import underlying_error

log = logging.getLogger(__name__)


def retention_config(kafka: KafkaSettings) -> dict[str, str]:
    """How long patient data stays on a topic: at most ``retention.ms + segment.ms``.

    Kafka deletes whole segments once their newest message is past retention,
    so segments roll daily (or at the retention, if shorter) to keep the bound
    close to ``KAFKA_RETENTION_MS``.
    """
    return {
        "retention.ms": str(kafka.retention_ms),
        "segment.ms": str(min(kafka.retention_ms, 86_400_000)),
    }


def topic_config(kafka: KafkaSettings) -> dict[str, str]:
    """Retention bounds how long patient data stays; min ISR makes acks=all mean it."""
    return {
        **retention_config(kafka),
        "min.insync.replicas": str(min(kafka.min_insync_replicas, kafka.replication_factor)),
        "cleanup.policy": "delete",
    }


def changelog_config(kafka: KafkaSettings, window_s: float) -> dict[str, str]:
    """Table changelogs are compacted, soon enough to stay near one window of entries.

    Kafka compacts only closed segments (by default 1 GiB or 7 days) and keeps
    tombstones for 24 h, so with its defaults the changelog of a short dedupe
    window grows for days. Here segments roll, and tombstones go, a tenth of
    the window after they are written (1 s to 1 day), and a log is cleaned once
    a tenth of it is dirty. A tombstone removed before a restoring worker read
    it is harmless: the stage drops restored entries older than the window.
    """
    step_ms = round(min(max(window_s / 10, 1.0), 86_400.0) * 1000)
    return {
        "cleanup.policy": "compact",
        "min.insync.replicas": str(min(kafka.min_insync_replicas, kafka.replication_factor)),
        "segment.ms": str(step_ms),
        "delete.retention.ms": str(step_ms),
        "min.cleanable.dirty.ratio": "0.1",
    }


async def _started_admin(kafka: KafkaSettings) -> AIOKafkaAdminClient:
    """An admin client, started; a failed start raises its real cause (a password, a CA)."""
    admin = AIOKafkaAdminClient(**kafka.client_options(), request_timeout_ms=15_000)
    try:
        await admin.start()
    except (KafkaError, OSError) as exc:
        cause = await underlying_error(exc, kafka)
        if cause is not exc:
            raise cause from exc
        raise
    return admin


async def ensure_topics(
    kafka: KafkaSettings,
    names: list[str] | None = None,
    config: dict[str, str] | None = None,
) -> list[str]:
    """Create every missing topic; return the names created.

    By default the pipeline's own topics with :func:`topic_config`, and the
    existing ones get the configured retention (:func:`retention_config`):
    they carry patient data. A stage passes its table changelogs with
    :func:`changelog_config`.
    """
    topics = names if names is not None else Topics(kafka.topic_prefix).all()
    missing = await _create_missing(kafka, topics, config)
    if names is None:
        existing = [name for name in topics if name not in missing]
        if existing:
            await align_topic_configs(kafka, existing, retention_config(kafka))
    return missing


async def _create_missing(
    kafka: KafkaSettings, topics: list[str], config: dict[str, str] | None
) -> list[str]:
    admin = await _started_admin(kafka)
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


DYNAMIC_TOPIC_CONFIG = 1  # DescribeConfigs v1+ config_source of a per-topic override


async def align_topic_configs(
    kafka: KafkaSettings, names: list[str], config: dict[str, str]
) -> list[str]:
    """Set ``config`` on existing topics where it differs; return the names changed.

    For topics created before a setting changed (a new ``DEDUPE_WINDOW``, an
    upgrade). Other per-topic overrides an operator set are kept: Kafka's
    AlterConfigs replaces the whole set, so it is sent merged.
    """
    admin = await _started_admin(kafka)
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, name) for name in names]
        changed: list[str] = []
        for response in await admin.describe_configs(resources):
            for code, _message, _type, name, entries, *_ in response.resources:
                if code != 0:
                    raise for_code(code)(f"cannot describe topic {name}")
                overrides = {
                    entry[0]: entry[1] for entry in entries if entry[3] == DYNAMIC_TOPIC_CONFIG
                }
                if any(overrides.get(key) != value for key, value in config.items()):
                    merged = overrides | config
                    resource = ConfigResource(ConfigResourceType.TOPIC, name, merged)
                    for altered in await admin.alter_configs([resource]):
                        for alter_code, *_ in altered.resources:
                            if alter_code != 0:
                                raise for_code(alter_code)(f"cannot alter topic {name}")
                    changed.append(name)
        if changed:
            log.info("updated topic configs: %s", ", ".join(changed))
        return changed
    finally:
        await admin.close()


async def describe_topic_config(kafka: KafkaSettings, name: str) -> dict[str, str]:
    """The broker's effective configuration of one topic (what an auditor checks)."""
    admin = await _started_admin(kafka)
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, name)
        found: dict[str, str] = {}
        for response in await admin.describe_configs([resource]):
            for code, _message, _type, _name, entries, *_ in response.resources:
                if code != 0:
                    raise for_code(code)(f"cannot describe topic {name}")
                found.update({entry[0]: entry[1] for entry in entries})
        return found
    finally:
        await admin.close()
