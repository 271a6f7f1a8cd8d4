"""``spakinect-pipeline rejected replay``: re-validate kept refused bodies, publish what passes.

Once a schema disagreement with the vendor is fixed (the models accept what
they refused), this re-reads the whole rejected topic and publishes every body
the current models accept to its raw topic (or the unrouted one), routed by its
own ``event`` field, with its original ``received_at``. Re-running is
harmless: the dedupe stage drops events already published (same ``event_id``).
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from contextlib import aclosing
from datetime import UTC, datetime

from events.topics import Topics
from ingress.intake import Refused, decide
from ingress.outbound import Outbound, outbound_for
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.publisher import KafkaPublisher
from spakinect_pipeline.topic_reader import read_whole_topic
from spakinect_pipeline.tracing import carried


def _received_at(headers: dict[str, bytes]) -> datetime:
    try:
        return datetime.fromisoformat(headers["received_at"].decode().replace("Z", "+00:00"))
    except (KeyError, ValueError):
        return datetime.now(UTC)


def judge(
    value: bytes, raw_headers: Sequence[tuple[str, bytes]], topics: Topics, now_ms: int
) -> tuple[str, Outbound | None]:
    """A kept body's count (``published``, ``unrouted`` or ``still_refused:<reason>``) and
    what to publish for it, by today's models (None when they still refuse it)."""
    decision = decide(value, None, now_ms)
    if isinstance(decision, Refused):
        return f"still_refused:{decision.reason}", None
    out = outbound_for(decision, topics, _received_at(dict(raw_headers)))
    return ("published" if out.routed else "unrouted"), out


async def _publish(
    publisher: KafkaPublisher, out: Outbound, raw_headers: Sequence[tuple[str, bytes]]
) -> None:
    # The trace of the refused delivery continues with the replayed event.
    await publisher.publish(
        out.topic, out.value, key=out.key, headers=[*out.headers, *carried(raw_headers)], timeout=30
    )


async def replay_selected(
    kafka: KafkaSettings, bodies: Sequence[tuple[bytes, Sequence[tuple[str, bytes]]]]
) -> Counter[str]:
    """As :func:`replay_rejected`, for chosen kept bodies (value and headers) only."""
    topics = Topics(kafka.topic_prefix)
    publisher = KafkaPublisher(kafka, client_id="spakinect-rejected-replay")
    counts: Counter[str] = Counter()
    now_ms = int(time.time() * 1000)
    try:
        for value, raw_headers in bodies:
            count, out = judge(value, raw_headers, topics, now_ms)
            counts[count] += 1
            if out is not None:
                await _publish(publisher, out, raw_headers)
    finally:
        await publisher.stop()
    return counts


async def replay_rejected(
    kafka: KafkaSettings, *, dry_run: bool = False, idle_s: float = 2.0
) -> Counter[str]:
    """Return counts: ``published``, ``unrouted`` and ``still_refused:<reason>``."""
    topics = Topics(kafka.topic_prefix)
    publisher = KafkaPublisher(kafka, client_id="spakinect-rejected-replay")
    counts: Counter[str] = Counter()
    try:
        now_ms = int(time.time() * 1000)
        async with aclosing(read_whole_topic(kafka, topics.rejected, idle_s)) as rejected:
            async for message in rejected:
                raw_headers = list(message.headers or ())
                count, out = judge(message.value or b"", raw_headers, topics, now_ms)
                counts[count] += 1
                if out is not None and not dry_run:
                    await _publish(publisher, out, raw_headers)
    finally:
        await publisher.stop()
    return counts
