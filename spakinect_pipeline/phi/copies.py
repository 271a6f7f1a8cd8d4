"""Where a patient's data still lives after a forget: Kafka topics, until their retention ends.

Kafka cannot erase one record from a ``delete``-policy topic; copies there
expire with the topic's retention. A message written now is gone at the
latest ``retention.ms + segment.ms`` later (whole segments are deleted).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta

from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from events.topics import SINK_NAMES, Topics
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.topic_admin import retention_config


def patient_topics(topics: Topics) -> list[str]:
    """Topics whose messages can hold a patient's name or email.

    The event types' own topics come from the registry (``carries_phi``); the
    others can hold a body of any event type.
    """
    return [
        *topics.phi_topics(),
        topics.unrouted,
        topics.rejected,
        topics.dlq,
        *(topics.retry(sink) for sink in SINK_NAMES),
    ]


@dataclass(frozen=True, slots=True)
class TopicCopy:
    topic: str
    retention_ms: int
    segment_ms: int
    source: str  # "broker" (described) or "config" (KAFKA_RETENTION_MS; broker unreachable)

    def until(self, now: datetime) -> datetime | None:
        """Latest time a message written before ``now`` can still be on the topic (None: never
        deleted, ``retention.ms=-1``)."""
        if self.retention_ms < 0:
            return None
        return now + timedelta(milliseconds=self.retention_ms + max(self.segment_ms, 0))


async def topic_copies(kafka: KafkaSettings) -> list[TopicCopy]:
    """Each patient topic's retention as the broker reports it (or as configured)."""
    names = patient_topics(Topics(kafka.topic_prefix))
    configured = retention_config(kafka)
    fallback = [
        TopicCopy(n, int(configured["retention.ms"]), int(configured["segment.ms"]), "config")
        for n in names
    ]
    admin = AIOKafkaAdminClient(**kafka.client_options(), request_timeout_ms=10_000)
    try:
        await admin.start()
    except Exception:  # noqa: BLE001 - unreachable broker: report what config says
        return fallback
    try:
        resources = [ConfigResource(ConfigResourceType.TOPIC, n) for n in names]
        found: dict[str, dict[str, str]] = {}
        for response in await admin.describe_configs(resources):
            for code, _message, _type, name, entries, *_ in response.resources:
                if code == 0:
                    found[name] = {e[0]: e[1] for e in entries}
        return [
            TopicCopy(
                copy.topic,
                int(found[copy.topic].get("retention.ms") or copy.retention_ms),
                int(found[copy.topic].get("segment.ms") or copy.segment_ms),
                "broker",
            )
            if copy.topic in found
            else copy
            for copy in fallback
        ]
    except Exception:  # noqa: BLE001 - describe failed: report what config says
        return fallback
    finally:
        await admin.close()


def copies_lines(copies: list[TopicCopy], now: datetime) -> Iterator[str]:
    yield "copies that still exist (they expire on their own; Kafka cannot erase one record):"
    for copy in copies:
        until = copy.until(now)
        if until is None:
            yield f"  kafka topic {copy.topic}: no time limit (retention.ms=-1, from {copy.source})"
            continue
        days = copy.retention_ms / 86_400_000
        yield (
            f"  kafka topic {copy.topic}: until {until.isoformat(timespec='minutes')}"
            f" at the latest (retention {days:g} d + one segment, from {copy.source})"
        )
    yield "  email stage state: none (it keeps event ids and the kinds sent, no patient data)"
    yield "  emails already sent: in the SMTP relay and the clinic's inbox, outside the pipeline"
