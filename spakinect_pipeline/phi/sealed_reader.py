"""A stage's reader of sealed envelopes: the key topic materialized, followed, asked on a miss.

The Postgres and email stages open version-2 envelopes before they write or
render (docs/patient-data-on-kafka.md). This keeps a
:class:`~spakinect_pipeline.phi.key_store.KeyStore` fresh: read whole at
start, then refreshed every ``refresh_s`` in the background (so a tombstone
evicts a key within seconds) and at once when an envelope names a key it has
never seen (the ingress stores a key before the first event that uses it, so
after a refresh such a key exists, or was destroyed and compacted away long
ago, or the key topic is not the one the ingress writes). A key still unknown
``unknown_grace_s`` after this reader first missed it is reported as
``Status.UNKNOWN`` with ``expired=True``: the stage dead-letters the event
sealed (nothing lost; a replay once the key topic is right opens it). Which
status to make of what is :func:`~spakinect_pipeline.phi.opening.open_fields`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from events.envelope import Envelope
from spakinect_pipeline.config import ConfigError, KafkaSettings
from spakinect_pipeline.phi.crypto import Keyring, PhiDecryptError
from spakinect_pipeline.phi.key_store import KeyStore, ensure_key_topic
from spakinect_pipeline.phi.opening import KeyRef, Opening, Status, open_fields
from spakinect_pipeline.phi.settings import PhiSettings

log = logging.getLogger(__name__)

NO_MASTER = "sealed envelope, and PHI_KAFKA_MASTER_KEYS is not set"
MAX_MISSING = 10_000  # unknown keys remembered (their first miss), at most


@dataclass(frozen=True, slots=True)
class Verdict:
    """An opening, and whether an unknown key has been missing past the grace."""

    opening: Opening
    expired: bool = False


class SealedReader:
    """Opens envelopes for one stage; ``master`` None means it cannot open any (dead-letter)."""

    def __init__(
        self,
        kafka: KafkaSettings,
        master: Keyring | None,
        *,
        refresh_s: float = 5.0,
        unknown_grace_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        store: KeyStore | None = None,
    ) -> None:
        self.kafka = kafka
        self.master = master
        self.keys = store or (KeyStore(kafka, master) if master is not None else None)
        self.refresh_s = refresh_s
        self.unknown_grace_s = unknown_grace_s
        self.clock = clock
        self._missing_since: dict[KeyRef, float] = {}
        self._lock = asyncio.Lock()
        self._follower: asyncio.Task[None] | None = None
        self._loaded = False

    async def start(self) -> None:
        """Materialize the key topic once and follow it; ConfigError for a wrong master key.

        Kafka unreachable here is not fatal: the first envelope that needs a key
        refreshes again (a retryable error until it can).
        """
        if self.keys is None or self._follower is not None:
            return
        try:
            await ensure_key_topic(self.kafka)
            await self.refresh()
        except ConfigError:
            raise
        except Exception as exc:  # noqa: BLE001 - Kafka client errors: retried on use
            log.warning("key topic unreadable at start (%s); will retry", type(exc).__name__)
        self._follower = asyncio.create_task(self._follow(), name="phi-key-topic")

    async def stop(self) -> None:
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._follower
            self._follower = None

    async def refresh(self) -> None:
        """Read the key records added since the last refresh (tombstones evict keys)."""
        assert self.keys is not None
        async with self._lock:
            await self.keys.refresh()
            if not self._loaded:
                try:
                    self._loaded = self.keys.verify_master()  # False: no key to check yet
                except PhiDecryptError:
                    raise ConfigError(
                        "PHI_KAFKA_MASTER_KEYS does not open the key topic's keys"
                        " (a wrong or missing master key entry)"
                    ) from None

    async def _follow(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_s)
            try:
                await self.refresh()
            except ConfigError as exc:
                log.error("%s; sealed envelopes will be dead-lettered", exc)
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("key topic refresh failed (%s)", type(exc).__name__)

    async def open(self, envelope: Envelope) -> Verdict:
        """The envelope's payload opened (or why not); refreshes once on an unknown key.

        Raises what :meth:`refresh` raises when that refresh cannot read Kafka.
        """
        if not envelope.sealed:
            return Verdict(Opening(Status.PLAIN, dict(envelope.payload)))
        if self.keys is None:
            return Verdict(Opening(Status.DAMAGED, dict(envelope.payload), reason=NO_MASTER))
        opening = open_fields(envelope.event_id, envelope.sealed, envelope.payload, self.keys)
        if opening.status is Status.UNKNOWN:
            await self.refresh()
            opening = open_fields(envelope.event_id, envelope.sealed, envelope.payload, self.keys)
        if opening.status is not Status.UNKNOWN:
            return Verdict(opening)
        now = self.clock()
        if len(self._missing_since) > MAX_MISSING:  # a misconfigured topic: start counting anew
            self._missing_since.clear()
        first = min(self._missing_since.setdefault(ref, now) for ref in opening.unknown)
        return Verdict(opening, expired=now - first >= self.unknown_grace_s)


def stage_reader(kafka: KafkaSettings, phi: PhiSettings) -> SealedReader:
    """The reader a stage opens with: the master key required when ``PHI_KAFKA_SEAL`` is on.

    With sealing off and no master key, version-1 envelopes pass as before and a
    version-2 one is dead-lettered (sealed, replayable once the key is set);
    with a master key set, version 2 opens whatever the flag says (a rollback
    of the flag leaves sealed messages on the topics).
    """
    wanted = phi.kafka_seal or (
        phi.kafka_master_keys is not None and phi.kafka_master_keys.get_secret_value().strip()
    )
    return SealedReader(kafka, phi.kafka_master() if wanted else None)
