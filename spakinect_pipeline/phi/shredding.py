"""A forget on Kafka: destroy the patient's data keys, and check later that none is left.

``phi forget`` calls :func:`destroy_keys` after its Postgres transaction;
``phi verify-forgotten`` calls :func:`verify`, ``phi sweep`` calls
:func:`expire_epoch_keys` (docs/patient-data-on-kafka.md).
A patient's keys are named by subject: the blind index of their email, and
the erasure marker of each of their gfe ids (a visit without an email is
keyed by it). Both functions raise :class:`KeyTopicUnreachable` with a text
that names no patient when Kafka does not answer, so the operator gets a
clear error and runs the same command again: both are idempotent.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.phi.crypto import BlindIndex
from spakinect_pipeline.phi.kafka_keys import subject_prefix
from spakinect_pipeline.phi.key_janitor import sweep_epoch_keys
from spakinect_pipeline.phi.key_store import (
    KEY_TOPIC_CONFIG,
    destroy,
    ensure_key_topic,
    key_topic,
    read_records,
)
from spakinect_pipeline.topic_admin import describe_topic_config

TIMEOUT_S = 60.0
T = TypeVar("T")
CHECKED = ("cleanup.policy", "max.compaction.lag.ms", "segment.ms", "delete.retention.ms")


class KeyTopicUnreachable(Exception):
    """Kafka did not answer; the text names the topic and the error class only."""


def subjects_of(index: BlindIndex, email: str | None, gfe_ids: Iterable[str]) -> list[str]:
    """The subjects a patient's keys can be filed under (email index, gfe markers)."""
    found = [index.email_index(email)] if email else []
    return found + [index.gfe_marker(g) for g in sorted(set(gfe_ids)) if g]


async def _bounded(kafka: KafkaSettings, work: Awaitable[T]) -> T:
    try:
        return await asyncio.wait_for(work, TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - any Kafka client error, or the timeout
        topic = key_topic(kafka.topic_prefix)
        raise KeyTopicUnreachable(f"key topic {topic} unreachable ({type(exc).__name__})") from None


async def destroy_keys(kafka: KafkaSettings, subjects: Sequence[str]) -> list[str]:
    """Tombstone every live key of ``subjects``; the record keys destroyed (none the 2nd time)."""

    async def run() -> list[str]:
        await ensure_key_topic(kafka)
        return await destroy(kafka, list(subjects))

    return await _bounded(kafka, run())


async def expire_epoch_keys(kafka: KafkaSettings, ttl_s: float) -> list[str]:
    """The key janitor's round, once, for ``phi sweep``: tombstone the epoch keys past
    ``PHI_UNPARSED_KEY_TTL`` now, rather than at the ingress's next hourly round (or at
    all, when no ingress runs); the record keys destroyed (none the 2nd time)."""

    async def run() -> list[str]:
        await ensure_key_topic(kafka)
        return await sweep_epoch_keys(kafka, ttl_s)

    return await _bounded(kafka, run())


@dataclass(frozen=True, slots=True)
class Verification:
    """Live key records left for the subjects, and the key topic's compaction settings."""

    live: list[str]
    config: dict[str, str]

    def problems(self) -> list[str]:
        """Settings that would let a destroyed key outlive the documented bound."""
        return [
            f"{name}={self.config.get(name, '?')} (expected {KEY_TOPIC_CONFIG[name]})"
            for name in CHECKED
            if self.config.get(name) != KEY_TOPIC_CONFIG[name]
        ]


async def verify(kafka: KafkaSettings, subjects: Sequence[str]) -> Verification:
    """Read the key topic from the beginning: which of the subjects' keys still open."""

    async def run() -> Verification:
        await ensure_key_topic(kafka)
        records, _ = await read_records(kafka)
        prefixes = tuple(subject_prefix(s) for s in subjects)
        live = sorted(k for k, v in records.items() if v is not None and k.startswith(prefixes))
        return Verification(live, await describe_topic_config(kafka, key_topic(kafka.topic_prefix)))

    return await _bounded(kafka, run())


def verification_lines(kafka: KafkaSettings, found: Verification) -> Iterator[str]:
    topic = key_topic(kafka.topic_prefix)
    yield f"key topic {topic}: {len(found.live)} live key record(s) for the patient"
    for name in found.live:
        yield f"  live: {name}"
    settings = ", ".join(f"{n}={found.config.get(n, '?')}" for n in CHECKED)
    yield f"key topic settings: {settings}"
    for problem in found.problems():
        yield f"  warning: {problem}: a destroyed key's record may outlive the 2 h bound"
