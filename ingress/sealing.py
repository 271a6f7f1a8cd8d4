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
janitor) evicts the key. A tombstone can only follow the key's own record, so
a cached key is used only while the later of its minting and the follower's
last catch-up is under :data:`STALE_S` old (broker trouble, a lagging
follower: new keys are minted instead): no destroyed key seals anything for
more than ``STALE_S`` seconds. A catch-up vouches only for keys minted after
the follower knew its start offset (those minted before may lie before it).
At most :data:`MAX_KEYS` subjects are cached (least recently used out: that
patient's next visit mints a new key).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
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
MAX_KEYS = 100_000
"""Subjects whose key one process keeps (~0.5 KB each)."""

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
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.master = master
        self.paths = paths
        self.send = send
        self.stale_s = stale_s  # None: a short-lived process (a replay) that follows nothing
        self.topic = key_topic(kafka.topic_prefix)
        self.follower = KeyFollower(kafka, self.evict)
        self.clock = clock
        self._minted: OrderedDict[str, tuple[DataKey, float]] = OrderedDict()  # and when
        # Record keys being stored right now: True once their tombstone came (see _mint).
        self._minting: dict[str, bool] = {}
        self._epoch = asyncio.Lock()  # one key per hour, not one per concurrent request

    def evict(self, record_key: str) -> None:
        """A tombstone: stop sealing with that key (the next event mints a new one)."""
        if record_key in self._minting:
            self._minting[record_key] = True
        subject = record_key.split(":", 2)[1] if record_key.count(":") >= 2 else ""
        entry = self._minted.get(subject)
        if entry is not None and entry[0].record_key == record_key:
            del self._minted[subject]

    def cached(self, subject: str) -> DataKey | None:
        """The key to reuse, unless a tombstone for it could have been missed for too long."""
        entry = self._minted.get(subject)
        if entry is None:
            return None
        key, minted_at = entry
        if self.stale_s is not None:
            known_until = minted_at
            since = self.follower.following_since  # a catch-up covers keys minted after it
            if since is not None and minted_at >= since:
                known_until = max(minted_at, self.follower.caught_up or minted_at)
            if self.clock() - known_until >= self.stale_s:
                del self._minted[subject]
                return None
        self._minted.move_to_end(subject)
        return key

    async def key_for(self, subject: str) -> DataKey:
        """``subject``'s key; minted and stored first when this process has none (or is stale)."""
        if not subject.startswith(EPOCH_PREFIX):
            return self.cached(subject) or await self._mint(subject)
        async with self._epoch:
            return self.cached(subject) or await self._mint(subject)

    async def _mint(self, subject: str) -> DataKey:
        key = new_data_key(subject)
        minted_at = self.clock()  # no tombstone for it can exist before this
        # Once the broker has the record, a forget can tombstone it and the follower apply
        # that before this coroutine resumes: an eviction with nothing cached yet. Such a
        # key is not cached (else the follower, caught up past it, would keep it fresh).
        self._minting[key.record_key] = False
        try:
            await self.send(self.topic, wrap(key, self.master), key.record_key.encode())
        finally:
            destroyed = self._minting.pop(key.record_key)
        if destroyed:
            return key  # this one event only: the stages see its key destroyed (forgotten)
        self._minted[subject] = (key, minted_at)
        if len(self._minted) > MAX_KEYS:
            self._minted.popitem(last=False)
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
