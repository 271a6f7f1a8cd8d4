"""``spakinect-pipeline rejected replay``: re-validate kept refused bodies, publish what passes.

Once a schema disagreement with the vendor is fixed (the models accept what
they refused), this re-reads the whole rejected topic and publishes every body
the current models accept to its raw topic (or the unrouted one), routed by its
own ``event`` field, with its original ``received_at``. Re-running is
harmless: the dedupe stage drops events already published (same ``event_id``).

A body kept sealed (``PHI_KAFKA_SEAL=on``) is opened with the key store
(``PHI_KAFKA_MASTER_KEYS``, read only when a sealed body shows up); once its
epoch key is gone (``PHI_UNPARSED_KEY_TTL`` passed, or destroyed) it counts as
``unreadable`` and is skipped. With sealing on, what is published is sealed as
the ingress would seal it.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from contextlib import aclosing
from datetime import UTC, datetime

from events.topics import Topics
from ingress.intake import Accepted, Refused, Unrouted, decide
from ingress.outbound import Outbound, outbound_for
from ingress.sealing import Sealer
from spakinect_pipeline.config import KafkaSettings, load_settings
from spakinect_pipeline.phi.key_store import KeyStore
from spakinect_pipeline.phi.settings import PhiSettings
from spakinect_pipeline.phi.unparsed import SEALED_HEADER, Lookup, Unreadable, open_body
from spakinect_pipeline.publisher import KafkaPublisher
from spakinect_pipeline.topic_reader import read_whole_topic
from spakinect_pipeline.tracing import carried


def _received_at(headers: dict[str, bytes]) -> datetime:
    try:
        return datetime.fromisoformat(headers["received_at"].decode().replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return datetime.now(UTC)


UNREADABLE = "unreadable"


def is_sealed(raw_headers: Sequence[tuple[str, bytes]]) -> bool:
    return any(name == SEALED_HEADER for name, _ in raw_headers)


async def key_lookup(kafka: KafkaSettings, phi: PhiSettings | None = None) -> Lookup:
    """The data keys on the key topic, for opening sealed kept bodies (needs the master key)."""
    store = KeyStore(kafka, (phi or load_settings(PhiSettings)).kafka_master())
    await store.refresh()
    return store.get


def judge(
    value: bytes,
    raw_headers: Sequence[tuple[str, bytes]],
    topics: Topics,
    now_ms: int,
    lookup: Lookup | None = None,
) -> tuple[str, Accepted | Unrouted | None]:
    """A kept body's count (``published``, ``unrouted``, ``unreadable`` or
    ``still_refused:<reason>``) and today's decision for it (None: nothing to publish)."""
    try:
        body = open_body(value, raw_headers, lookup or (lambda _s, _k: None))
    except Unreadable:
        return UNREADABLE, None
    decision = decide(body, None, now_ms)
    if isinstance(decision, Refused):
        return f"still_refused:{decision.reason}", None
    return ("published" if isinstance(decision, Accepted) else "unrouted"), decision


class _Replayer:
    """Opens kept bodies (the key store read once, when the first sealed one shows up) and
    publishes what today's models accept, sealed when ``PHI_KAFKA_SEAL=on``."""

    def __init__(self, kafka: KafkaSettings, phi: PhiSettings | None) -> None:
        self.kafka = kafka
        self.phi = phi or load_settings(PhiSettings)
        self.topics = Topics(kafka.topic_prefix)
        self.publisher = KafkaPublisher(kafka, client_id="spakinect-rejected-replay")
        self.lookup: Lookup | None = None
        self.sealer = (
            Sealer(kafka, self.phi.kafka_master(), self.phi.paths(), self._send, stale_s=None)
            if self.phi.kafka_seal
            else None
        )
        self.now_ms = int(time.time() * 1000)
        self.counts: Counter[str] = Counter()

    async def _send(self, topic: str, value: bytes, key: bytes) -> None:
        await self.publisher.publish(topic, value, key=key, timeout=30)

    async def one(
        self, value: bytes, raw_headers: Sequence[tuple[str, bytes]], dry_run: bool
    ) -> None:
        if self.lookup is None and is_sealed(raw_headers):
            self.lookup = await key_lookup(self.kafka, self.phi)
        count, decision = judge(value, raw_headers, self.topics, self.now_ms, self.lookup)
        self.counts[count] += 1
        if decision is None or dry_run:
            return
        received_at = _received_at(dict(raw_headers))
        out: Outbound = (
            outbound_for(decision, self.topics, received_at)
            if self.sealer is None
            else await self.sealer.outbound(decision, self.topics, received_at)
        )
        # The trace of the refused delivery continues with the replayed event.
        await self.publisher.publish(
            out.topic,
            out.value,
            key=out.key,
            headers=[*out.headers, *carried(raw_headers)],
            timeout=30,
        )


async def replay_selected(
    kafka: KafkaSettings,
    bodies: Sequence[tuple[bytes, Sequence[tuple[str, bytes]]]],
    phi: PhiSettings | None = None,
) -> Counter[str]:
    """As :func:`replay_rejected`, for chosen kept bodies (value and headers) only."""
    replayer = _Replayer(kafka, phi)
    try:
        for value, raw_headers in bodies:
            await replayer.one(value, raw_headers, dry_run=False)
    finally:
        await replayer.publisher.stop()
    return replayer.counts


async def replay_rejected(
    kafka: KafkaSettings,
    *,
    dry_run: bool = False,
    idle_s: float = 2.0,
    phi: PhiSettings | None = None,
) -> Counter[str]:
    """Return counts: ``published``, ``unrouted``, ``unreadable`` (a sealed body whose key
    is gone) and ``still_refused:<reason>``."""
    replayer = _Replayer(kafka, phi)
    try:
        topic = replayer.topics.rejected
        async with aclosing(read_whole_topic(kafka, topic, idle_s)) as rejected:
            async for message in rejected:
                await replayer.one(message.value or b"", list(message.headers or ()), dry_run)
    finally:
        await replayer.publisher.stop()
    return replayer.counts
