"""The key janitor: tombstone epoch keys older than ``PHI_UNPARSED_KEY_TTL``.

Refused and unrouted bodies are sealed under hourly epoch keys
(:mod:`spakinect_pipeline.phi.unparsed`); destroying an hour's keys is what
makes those bodies unreadable, long before the topics' retention removes
them. It reads the whole key topic (every replica and restart mints its own
epoch keys, so no process knows them all), keeps the epoch records past their
time and tombstones them. Idempotent: a second run finds them tombstoned. The
ingress runs it hourly (:func:`run_janitor`); ``phi sweep`` may call
:func:`sweep_epoch_keys` once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from aiokafka.errors import KafkaError

from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.phi.key_store import read_records, tombstone
from spakinect_pipeline.phi.unparsed import expired_epoch_records

log = logging.getLogger(__name__)
JANITOR_INTERVAL_S = 3600.0
FIRST_AFTER_S = 60.0  # after start: the follower has created the key topic by then


async def sweep_epoch_keys(
    kafka: KafkaSettings, ttl_s: float, now: datetime | None = None
) -> list[str]:
    """Tombstone every epoch key record whose hour ended more than ``ttl_s`` before ``now``;
    return the record keys destroyed (they name an hour and a random id, nothing else)."""
    records, _ = await read_records(kafka)
    doomed = expired_epoch_records(records, now or datetime.now(UTC), ttl_s)
    await tombstone(kafka, doomed)
    return doomed


async def run_janitor(
    kafka: KafkaSettings,
    ttl_s: float,
    interval_s: float = JANITOR_INTERVAL_S,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    first_after_s: float = FIRST_AFTER_S,
) -> None:
    """Sweep every ``interval_s`` until cancelled; a broker outage skips a round."""
    await asyncio.sleep(first_after_s)
    while True:
        try:
            destroyed = await sweep_epoch_keys(kafka, ttl_s, clock())
        except (KafkaError, OSError) as exc:
            log.warning("key janitor: skipped a round (%s)", type(exc).__name__)
        else:
            if destroyed:
                log.info("key janitor: epoch keys destroyed", extra={"count": len(destroyed)})
        await asyncio.sleep(interval_s)
