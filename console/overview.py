"""The overview page's figures, all from offsets and group metadata (no topic scans)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from console.chart import Chart, chart, per_interval
from console.kafka_view import KafkaUnreachable, KafkaView
from console.replays import replayed_count
from events.registry import EVENT_TYPES
from events.topics import Topics


@dataclass(slots=True)
class Overview:
    day: Chart
    week: Chart
    day_total: dict[str, int]
    stages: list[dict[str, Any]]
    dlq: int | None  # open: on the DLQ, not replayed
    rejected: int | None
    last_received: datetime | None
    ready: dict[str, bool] = field(default_factory=dict)
    dlq_replayed: int | None = None


def day_starts(now: datetime, days: int) -> list[datetime]:
    """UTC midnights of the last ``days`` days, today's last."""
    top = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return [top - timedelta(days=days - 1 - i) for i in range(days)]


def hour_starts(now: datetime, hours: int) -> list[datetime]:
    top = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return [top - timedelta(hours=hours - 1 - i) for i in range(hours)]


def stage_inputs(topics: Topics) -> dict[str, list[str]]:
    return {
        "dedupe": topics.raw_topics(),
        "postgres": [*topics.clean_topics(), topics.retry("postgres")],
        "email": [topics.visits, topics.retry("email")],  # as streams/email_stage.py subscribes
    }


async def _series(view: KafkaView, topics: Topics, starts: list[datetime]) -> dict[str, list[int]]:
    moments = [int(s.timestamp() * 1000) for s in starts] + [2**62]
    events = list(EVENT_TYPES)
    totals = await view.offsets_at([topics.raw(event) for event in events], moments)
    return {event: per_interval(t) for event, t in zip(events, totals, strict=True)}


async def _ingress_ready(url: str | None) -> bool | None:
    if not url:
        return None
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            return (await client.get(url.rstrip("/") + "/readyz")).status_code == 200
    except httpx.HTTPError:
        return False


async def gather(
    view: KafkaView, pool: asyncpg.Pool, topics: Topics, app_id: str, ingress_url: str | None
) -> Overview:
    """The figures; without Kafka, only the readiness (the counts are unknown, not zero)."""
    ready: dict[str, bool] = {}
    try:
        ready["postgres"] = await pool.fetchval("SELECT 1") == 1
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
        ready["postgres"] = False
    ingress = await _ingress_ready(ingress_url)
    if ingress is not None:
        ready["ingress"] = ingress
    try:
        await view.check()
    except KafkaUnreachable:
        ready["kafka"] = False
        return Overview(
            Chart(), Chart(), dict.fromkeys(EVENT_TYPES, 0), [], None, None, None, ready
        )
    ready["kafka"] = True
    now = datetime.now(UTC)
    hours = hour_starts(now, 24)
    day = await _series(view, topics, hours)
    days = day_starts(now, 7)
    week = await _series(view, topics, days)
    hour_ago = int((now - timedelta(hours=1)).timestamp() * 1000)
    stages = []
    for stage, inputs in stage_inputs(topics).items():
        group = f"{app_id}-{stage}"
        lag = await view.group_lag(group, inputs)
        last_hour = sum(
            end - before for before, end in await view.offsets_at(inputs, [hour_ago, 2**62])
        )
        members = await view.group_members(group)
        ready[f"worker {stage}"] = members > 0
        stages.append({"stage": stage, "members": members, "last_hour": last_hour, **lag})
    dlq_total = await view.count(topics.dlq)
    beginnings = {
        tp.partition: await view.beginning(topics.dlq, tp.partition)
        for tp in await view.partitions(topics.dlq)
    }
    replayed = await replayed_count(pool, topics.dlq, beginnings)
    return Overview(
        day=chart(hours, day, label="%H:00", every=3, unit="hour"),
        week=chart(days, week, label="%a %d", every=1, unit="day, so far for today"),
        day_total={event: sum(values) for event, values in day.items()},
        stages=stages,
        dlq=max(dlq_total - replayed, 0),
        dlq_replayed=replayed,
        rejected=await view.count(topics.rejected),
        last_received=await view.last_message_at(topics.raw_topics()),
        ready=ready,
    )
