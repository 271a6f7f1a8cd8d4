"""``PHI_KAFKA_SEAL=on``: what the ingress publishes, sealed per patient (or per hour).

docs/patient-data-on-kafka.md has the design. A visit's patient fields are
sealed with its patient's data key (subject: blind index of the email, else
the gfe marker); a refused or unrouted body is sealed whole with the key of
its hour (:mod:`spakinect_pipeline.phi.unparsed`). A key this process has not
used yet is minted and stored on the key topic through the same publisher,
awaited, before the event: a failure there is a :class:`PublishFailed`, the
same 503 as a failed publish, and nothing is published.

Each process (each ``INGRESS_WORKERS`` worker) keeps the keys it minted and
follows the key topic (:class:`KeyFollower`): a tombstone (a forget, the
janitor) evicts the key, and if the follower has not caught up within
:data:`STALE_S` (broker trouble) every cached key is dropped and new ones are
minted, so no destroyed key seals anything for more than ``STALE_S`` seconds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime

from events.registry import EVENT_TYPES
from events.topics import Topics
from ingress.intake import Accepted, Refused, Unrouted
from ingress.outbound import Outbound, outbound_for, rejected_message
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.phi.crypto import Keyring
from spakinect_pipeline.phi.kafka_keys import DataKey, new_data_key, seal_payload, subject_of, wrap
from spakinect_pipeline.phi.key_follow import KeyFollower
from spakinect_pipeline.phi.key_store import key_topic
from spakinect_pipeline.phi.paths import Path
from spakinect_pipeline.phi.unparsed import EPOCH_PREFIX, epoch_subject, seal_body, seal_unrouted
from spakinect_pipeline.publisher import Message

STALE_S = 10.0
"""Longest a destroyed key may still seal: cached keys are dropped once the follower lags more."""

Send = Callable[[str, bytes, bytes], Awaitable[None]]
"""Publish (topic, value, key) durably or raise PublishFailed."""


class Sealer:
    """The data keys this process seals with, by subject; minted on first use."""

    def __init__(
        self,
        kafka: KafkaSettings,
        master: Keyring,
        paths: tuple[Path, ...],
        send: Send,
        stale_s: float | None = STALE_S,
    ) -> None:
        self.master = master
        self.paths = paths
        self.send = send
        self.stale_s = stale_s  # None: a short-lived process (a replay) that follows nothing
        self.topic = key_topic(kafka.topic_prefix)
        self.follower = KeyFollower(kafka, self.evict)
        self._minted: dict[str, DataKey] = {}
        self._epoch = asyncio.Lock()  # one key per hour, not one per concurrent request

    def evict(self, record_key: str) -> None:
        """A tombstone: stop sealing with that key (the next event mints a new one)."""
        subject = record_key.split(":", 2)[1] if record_key.count(":") >= 2 else ""
        key = self._minted.get(subject)
        if key is not None and key.record_key == record_key:
            del self._minted[subject]

    async def key_for(self, subject: str) -> DataKey:
        """``subject``'s key; minted and stored first when this process has none (or is stale)."""
        if self.stale_s is not None and not self.follower.fresh_within(self.stale_s):
            self._minted.clear()
        if not subject.startswith(EPOCH_PREFIX):
            return self._minted.get(subject) or await self._mint(subject)
        async with self._epoch:
            return self._minted.get(subject) or await self._mint(subject)

    async def _mint(self, subject: str) -> DataKey:
        key = new_data_key(subject)
        await self.send(self.topic, wrap(key, self.master), key.record_key.encode())
        self._minted[subject] = key
        return key

    async def outbound(
        self, decision: Accepted | Unrouted, topics: Topics, received_at: datetime
    ) -> Outbound:
        """:func:`outbound_for`, sealed: a visit's patient paths, an unrouted body whole."""
        if isinstance(decision, Unrouted):
            epoch_key = await self.key_for(epoch_subject(received_at))
            return outbound_for(
                decision, topics, received_at, lambda eid, p: seal_unrouted(eid, p, epoch_key)
            )
        event_type = EVENT_TYPES.get(decision.event.event)
        if event_type is None or not event_type.carries_phi:
            return outbound_for(decision, topics, received_at)
        subject = subject_of(decision.event.payload, self.master.index)
        key = await self.key_for(subject or epoch_subject(received_at))
        return outbound_for(
            decision, topics, received_at, lambda eid, p: seal_payload(eid, p, key, self.paths)
        )

    async def rejected(
        self, refused: Refused, raw: bytes, route: str, topics: Topics, received_at: datetime
    ) -> Message:
        """:func:`rejected_message`, the body sealed whole under its hour's key."""
        key = await self.key_for(epoch_subject(received_at))
        return rejected_message(refused, raw, route, topics, received_at, seal_body(raw, key))
