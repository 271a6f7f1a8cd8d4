"""Replays of dead letters (``dlq_replays``): who replayed a letter, when, with what outcome,
and what that makes of the letter: open, or replayed (resolved when its row is written).

The reading of Postgres is here; :func:`letter_state` and :func:`dlq_steps` are pure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from console.step import Step
from streams.dlq_tools import DeadLetter

OUTCOMES = {
    "sent": "sent back to its stage",
    "failed": "Kafka did not take it",
    "no stage": "no stage to send it to",
}


@dataclass(frozen=True, slots=True)
class Replay:
    partition: int
    offset: int
    event_id: str | None
    actor: str
    at: datetime
    outcome: str

    @property
    def text(self) -> str:
        return f"replayed {self.at:%Y-%m-%d %H:%M:%S} UTC by {self.actor}: {OUTCOMES[self.outcome]}"


@dataclass(frozen=True, slots=True)
class LetterState:
    state: str  # open | replayed | resolved
    text: str


Position = tuple[int, int]


def was_replayed(position: Position, replays: Mapping[Position, Replay]) -> bool:
    """True when a replay Kafka took is the letter's newest."""
    replay = replays.get(position)
    return replay is not None and replay.outcome == "sent"


def letter_state(replay: Replay | None, stage: str, written: bool) -> LetterState:
    """Open until a replay Kafka took; resolved once a replayed postgres letter's row is
    written. A replay that fails again makes a new letter, open in its turn."""
    if replay is None:
        return LetterState("open", "open")
    if replay.outcome != "sent":
        return LetterState("open", f"open: {replay.text}")
    if stage == "postgres" and written:
        return LetterState("resolved", f"resolved: {replay.text}; the row is written")
    return LetterState("replayed", replay.text)


def dlq_steps(
    letters: Sequence[tuple[datetime, int, int, Mapping[str, str]]],
    replays: Mapping[Position, Replay],
) -> tuple[list[Step], list[Step]]:
    """The timeline's dead-letter steps: (replayed ones, open ones). A replayed letter's step
    goes before the stage steps it led to; an open one last, as the latest word."""
    done: list[Step] = []
    still: list[Step] = []
    for at, partition, offset, h in letters:
        replay = replays.get((partition, offset))
        detail = (
            f"dead-lettered: {h.get('error_type', '?')}: {h.get('error', '')} "
            f"(DLQ offset {partition}:{offset})"
        )
        if replay is not None and replay.outcome == "sent":
            done.append(Step(h.get("stage", "?"), "replayed", at, f"{detail}; {replay.text}"))
        else:
            more = f"; {replay.text}" if replay is not None else ""
            still.append(Step(h.get("stage", "?"), "failed", at, f"{detail}{more}"))
    return done, still


def _replay(row: asyncpg.Record) -> Replay:
    return Replay(
        row["dlq_partition"],
        row["dlq_offset"],
        row["event_id"],
        row["actor"],
        row["replayed_at"],
        row["outcome"],
    )


async def record(
    pool: asyncpg.Pool, topic: str, letters: Iterable[DeadLetter], actor: str, outcome: str
) -> None:
    await pool.executemany(
        "INSERT INTO dlq_replays (dlq_topic, dlq_partition, dlq_offset, event_id, stage,"
        " actor, outcome) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        [
            (topic, x.partition, x.offset, x.event_id or None, x.stage, actor, outcome)
            for x in letters
        ],
    )


async def latest(
    pool: asyncpg.Pool, topic: str, *, event_ids: Sequence[str] = ()
) -> dict[Position, Replay]:
    """The newest replay of each letter of ``topic`` (of those events only, when given)."""
    rows = await pool.fetch(
        "SELECT DISTINCT ON (dlq_partition, dlq_offset) dlq_partition, dlq_offset, event_id,"
        " actor, replayed_at, outcome FROM dlq_replays WHERE dlq_topic = $1"
        " AND (cardinality($2::text[]) = 0 OR event_id = ANY($2::text[]))"
        " ORDER BY dlq_partition, dlq_offset, replayed_at DESC",
        topic,
        list(event_ids),
    )
    return {(r["dlq_partition"], r["dlq_offset"]): _replay(r) for r in rows}


async def written(pool: asyncpg.Pool, event_ids: Sequence[str]) -> set[str]:
    """Which of ``event_ids`` have their ``spakinect_events`` row."""
    rows = await pool.fetch(
        "SELECT event_id FROM spakinect_events WHERE event_id = ANY($1::text[])", list(event_ids)
    )
    return {r["event_id"] for r in rows}


async def replayed_count(pool: asyncpg.Pool, topic: str, beginnings: Mapping[int, int]) -> int:
    """Letters still on the DLQ (at or past each partition's beginning) that a replay sent."""
    if not beginnings:
        return 0
    parts, firsts = zip(*beginnings.items(), strict=True)
    found: int = await pool.fetchval(
        "SELECT count(DISTINCT (r.dlq_partition, r.dlq_offset)) FROM dlq_replays r"
        " JOIN unnest($2::int[], $3::bigint[]) AS b(p, first) ON b.p = r.dlq_partition"
        " WHERE r.dlq_topic = $1 AND r.outcome = 'sent' AND r.dlq_offset >= b.first",
        topic,
        list(parts),
        list(firsts),
    )
    return found
