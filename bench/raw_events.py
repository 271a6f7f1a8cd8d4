"""Raw-topic messages exactly as the ingress writes them, for benchmarks that start after it.

The state and pipeline-throughput benchmarks measure the stages behind the
ingress, so they preload the raw topic directly, with the messages the
ingress's own pure path (:func:`ingress.intake.decide`, then
:func:`ingress.outbound.outbound_for`) makes of the vendor's sample.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from itertools import islice

import orjson

from events.samples import sample_visit
from events.topics import Topics
from ingress.intake import Accepted, decide
from ingress.outbound import outbound_for
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.publisher import KafkaPublisher, Message

VISIT = "visit.completed"


def visit_message(topics: Topics, gfe_id: str, timestamp: int = 1714675200000) -> Message:
    """One raw visit.completed message for ``gfe_id``, as the ingress would publish it."""
    now = datetime.now(UTC)
    body = orjson.dumps(sample_visit(gfe_id, timestamp))
    decision = decide(body, VISIT, int(now.timestamp() * 1000))
    if not isinstance(decision, Accepted):
        raise ValueError(f"the ingress would not accept the sample: {decision!r}")
    out = outbound_for(decision, topics, now)
    return Message(out.topic, out.value, out.key, out.headers)


def distinct_visits(topics: Topics, run: str, count: int) -> Iterator[Message]:
    """``count`` visits with distinct gfe_ids ``gfe_<run>_<n>``, generated lazily."""
    for n in range(count):
        yield visit_message(topics, f"gfe_{run}_{n}")


def with_duplicates(
    topics: Topics, run: str, total: int, duplicate_share: float, seed: int = 7
) -> list[Message]:
    """``total`` messages of which ``duplicate_share`` repeat an earlier one (vendor retries).

    Each repeat follows its original within 2,000 other originals, as a retry would.
    """
    rng = random.Random(seed)
    distinct = total - round(total * duplicate_share)
    originals = list(distinct_visits(topics, run, distinct))
    placed = [(float(i), message) for i, message in enumerate(originals)]
    placed += [
        (i + rng.uniform(0.5, 2000), originals[i])
        for i in rng.sample(range(distinct), total - distinct)
    ]
    placed.sort(key=lambda item: item[0])
    return [message for _, message in placed]


async def preload(kafka: KafkaSettings, messages: Iterable[Message], chunk: int = 5000) -> int:
    """Publish ``messages`` (acks=all, in order) in chunks; return how many were written."""
    publisher = KafkaPublisher(kafka, client_id="bench-preload", linger_ms=20)
    written = 0
    iterator = iter(messages)
    try:
        while batch := list(islice(iterator, chunk)):
            await publisher.publish_many(batch, timeout=60)
            written += len(batch)
    finally:
        await publisher.stop()
    return written
