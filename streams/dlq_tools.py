"""``spakinect-pipeline dlq list|replay``: see what failed, and send it back to its stage.

``list`` shows what failed, why, when and where — ids and error classes only,
never payloads (they carry patient data). ``replay`` re-delivers a dead
letter to the stage that failed it: a dedupe failure back to its raw topic, a
sink failure to ``spakinect.retry.<sink>``, which only that sink consumes.
Replaying twice is harmless: the stages and sinks are idempotent.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime

from tqdm import tqdm

from events.messages import DLQ_ERROR_HEADERS
from events.topics import SINK_NAMES, Topics
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.publisher import KafkaPublisher
from spakinect_pipeline.topic_reader import read_whole_topic


@dataclass(frozen=True, slots=True)
class DeadLetter:
    offset: int
    partition: int
    failed_at: datetime
    key: bytes | None
    value: bytes | None
    headers: dict[str, str]
    raw_headers: Sequence[tuple[str, bytes]]

    @property
    def stage(self) -> str:
        return self.headers.get("stage", "?")

    @property
    def event_id(self) -> str:
        return self.headers.get("event_id", "")


def target_topic(letter: DeadLetter, topics: Topics) -> str | None:
    """Where a replay goes: the raw topic for dedupe, the sink's retry topic for a sink."""
    if letter.stage == "dedupe":
        return letter.headers.get("source_topic")
    if letter.stage in SINK_NAMES:  # the sink reads its retry topic; no other sink sees it
        return topics.retry(letter.stage)
    return None


def replay_headers(letter: DeadLetter) -> list[tuple[str, bytes]]:
    kept = [(k, v) for k, v in letter.raw_headers if k not in DLQ_ERROR_HEADERS]
    return [*kept, ("replayed_from_dlq", f"{letter.partition}:{letter.offset}".encode())]


def matches(
    letter: DeadLetter, event_ids: set[str], since: datetime | None, stage: str | None
) -> bool:
    return (
        (not event_ids or letter.event_id in event_ids)
        and (since is None or letter.failed_at >= since)
        and (stage is None or letter.stage == stage)
    )


async def read_dead_letters(kafka: KafkaSettings, idle_s: float = 2.0) -> list[DeadLetter]:
    """Every message on the DLQ now (read without a consumer group)."""
    letters: list[DeadLetter] = []
    async with aclosing(read_whole_topic(kafka, Topics(kafka.topic_prefix).dlq, idle_s)) as dlq:
        async for m in dlq:
            raw = list(m.headers or ())
            letters.append(
                DeadLetter(
                    offset=m.offset,
                    partition=m.partition,
                    failed_at=datetime.fromtimestamp(m.timestamp / 1000, tz=UTC),
                    key=m.key,
                    value=m.value,
                    headers={k: v.decode("utf-8", "replace") for k, v in raw},
                    raw_headers=raw,
                )
            )
    return sorted(letters, key=lambda letter: letter.failed_at)


def list_rows(letters: Sequence[DeadLetter]) -> Iterator[str]:
    """One line per dead letter: when, stage, error class and text, source, event id."""
    yield f"{'failed_at':<20}  {'stage':<8}  {'error_type':<16}  {'source':<26}  event_id / error"
    for letter in letters:
        h = letter.headers
        where = f"[{h.get('source_partition', '?')}]@{h.get('source_offset', '?')}"
        source = h.get("source_topic", "?") + where
        yield (
            f"{letter.failed_at:%Y-%m-%dT%H:%M:%SZ}  {letter.stage:<8}  "
            f"{h.get('error_type', '?'):<16}  {source:<26}  "
            f"{letter.event_id or (letter.key or b'').decode('utf-8', 'replace')} — "
            f"{h.get('error', '')} (attempts {h.get('attempts', '?')})"
        )


async def replay(
    kafka: KafkaSettings, letters: Sequence[DeadLetter], *, progress: bool = True
) -> int:
    """Send each letter to its stage; return how many were re-delivered."""
    topics = Topics(kafka.topic_prefix)
    publisher = KafkaPublisher(kafka, client_id="spakinect-dlq-replay")
    sent = 0
    try:
        for letter in tqdm(letters, desc="replaying", unit="msg", disable=not progress):
            topic = target_topic(letter, topics)
            if topic is None:
                continue
            await publisher.publish(
                topic,
                letter.value or b"",
                key=letter.key,
                headers=replay_headers(letter),
                timeout=30,
            )
            sent += 1
    finally:
        await publisher.stop()
    return sent


def parse_since(value: str | None, now: datetime) -> datetime | None:
    """``2026-11-28T17:00:00Z`` or a duration back from now (``30m``, ``2h``, ``7d``)."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        from datetime import timedelta

        from spakinect_pipeline.config import parse_duration

        return now - timedelta(seconds=parse_duration(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
