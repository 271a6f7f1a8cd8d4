"""Topics are created with the settings of docs/contract.md (retention, replication, min ISR), and
changelog topics get (and keep) compaction settings derived from the dedupe window."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import InvalidReplicationFactorError

from events.registry import VISIT_COMPLETED
from events.topics import Topics
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.topic_admin import align_topic_configs, changelog_config, ensure_topics
from tests.services import Services

pytestmark = pytest.mark.integration


async def topic_overrides(kafka: KafkaSettings, name: str) -> dict[str, str]:
    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    try:
        [response] = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, name)])
        [(_code, _msg, _type, _name, entries, *_)] = response.resources
        return {entry[0]: entry[1] for entry in entries if entry[3] == 1}
    finally:
        await admin.close()


async def test_changelogs_are_created_compacting_within_the_window_and_realigned(
    services: Services,
) -> None:
    kafka = KafkaSettings(bootstrap_servers=[services.kafka_bootstrap], partitions=1)
    name = f"test-admin-{uuid.uuid4().hex[:6]}-seen-changelog"
    await ensure_topics(kafka, [name], changelog_config(kafka, window_s=60))
    created = await topic_overrides(kafka, name)
    assert created["cleanup.policy"] == "compact"
    assert created["segment.ms"] == created["delete.retention.ms"] == "6000"

    # An operator's own override survives when a new window changes ours.
    await align_topic_configs(kafka, [name], {"retention.bytes": "1073741824"})
    changed = await align_topic_configs(kafka, [name], changelog_config(kafka, window_s=7 * 86400))
    assert changed == [name]
    aligned = await topic_overrides(kafka, name)
    assert aligned["segment.ms"] == str(int(7 * 86400 * 1000 / 10))
    assert aligned["delete.retention.ms"] == aligned["segment.ms"]
    assert aligned["retention.bytes"] == "1073741824"
    assert await align_topic_configs(kafka, [name], changelog_config(kafka, 7 * 86400)) == []


async def test_retention_replication_and_min_isr_reach_the_created_topics(
    services: Services,
) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}."
    kafka = KafkaSettings(
        bootstrap_servers=[services.kafka_bootstrap],
        topic_prefix=prefix,
        partitions=2,
        retention_ms=3 * 86_400_000,
        min_insync_replicas=2,  # capped at the replication factor: 1 here
    )
    assert sorted(await ensure_topics(kafka)) == sorted(Topics(prefix).all())
    for name in Topics(prefix).all():
        overrides = await topic_overrides(kafka, name)
        assert overrides["retention.ms"] == str(3 * 86_400_000), name
        assert overrides["min.insync.replicas"] == "1", name
        assert overrides["cleanup.policy"] == "delete", name

    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    try:
        (described,) = await admin.describe_topics([Topics(prefix).clean(VISIT_COMPLETED)])
    finally:
        await admin.close()
    assert [len(p["replicas"]) for p in described["partitions"]] == [1, 1]

    # One broker cannot hold three replicas: the factor reaches the broker, which says no.
    wider = kafka.model_copy(update={"replication_factor": 3, "topic_prefix": f"{prefix}rf3."})
    with pytest.raises(InvalidReplicationFactorError):
        await ensure_topics(wider)


async def test_patient_topics_get_the_configured_retention_at_creation_and_later(
    services: Services,
) -> None:
    prefix = f"ret{uuid.uuid4().hex[:6]}."
    first = KafkaSettings(
        bootstrap_servers=[services.kafka_bootstrap], topic_prefix=prefix, partitions=1,
        retention_ms=14 * 86_400_000,
    )  # fmt: skip
    await ensure_topics(first)
    dlq = f"{prefix}dlq"
    assert (await topic_overrides(first, dlq))["retention.ms"] == str(14 * 86_400_000)
    assert (await topic_overrides(first, dlq))["segment.ms"] == "86400000"
    shorter = first.model_copy(update={"retention_ms": 3 * 3_600_000})
    assert await ensure_topics(shorter) == []  # nothing new, but the existing ones follow
    for topic in (f"{prefix}visit-completed", f"{prefix}rejected", dlq, f"{prefix}retry.email"):
        overrides = await topic_overrides(shorter, topic)
        assert overrides["retention.ms"] == str(3 * 3_600_000)
        assert overrides["segment.ms"] == str(3 * 3_600_000)
        assert overrides["cleanup.policy"] == "delete"  # other settings kept


async def test_the_topics_command_creates_the_changelogs_too(services: Services) -> None:
    """So workers can run on a cluster that forbids them to create topics."""
    from cli.main import create_all_topics
    from spakinect_pipeline.phi.key_store import key_topic
    from streams.settings import StreamsSettings
    from streams.stages import changelog_topic_names

    prefix = f"t{uuid.uuid4().hex[:6]}."
    kafka = KafkaSettings(
        bootstrap_servers=[services.kafka_bootstrap], topic_prefix=prefix, partitions=2
    )
    streams = StreamsSettings(app_id=f"app-{uuid.uuid4().hex[:6]}", dedupe_window=600)
    created = await create_all_topics(kafka, streams)
    changelogs = changelog_topic_names(streams.app_id)
    keys = key_topic(prefix)  # the data keys of sealed patient fields, compacted too
    assert set(created) == set(Topics(prefix).all()) | set(changelogs) | {keys}
    for _ in range(50):
        if key_overrides := await topic_overrides(kafka, keys):
            break
        await asyncio.sleep(0.2)
    assert key_overrides["cleanup.policy"] == "compact"
    for name in changelogs:
        for _ in range(50):  # a new topic's configs reach the broker's view shortly after
            if overrides := await topic_overrides(kafka, name):
                break
            await asyncio.sleep(0.2)
        assert overrides["cleanup.policy"] == "compact"
        assert overrides["segment.ms"] == "60000"
    assert await create_all_topics(kafka, streams) == []
