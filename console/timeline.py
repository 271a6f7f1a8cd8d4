"""One entity's deliveries as a timeline across every stage (``/lookup``).

Sources, each the stage that knows the step: the raw topic (every delivery
the ingress accepted, duplicates too), the clean topic (the dedupe verdict),
``spakinect_events`` (the writer's row, with the clean offset it read),
``gfe_visits`` (applied or not), the email stage's ``sent`` changelog (send
time) and the DLQ. Kafka is read one partition at a time, from the entity's
key, bounded by :data:`console.kafka_view.SCAN_LIMIT`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from console.kafka_view import SCAN_LIMIT, Found, KafkaView, Scan, partition_for
from console.mask import mask_email
from console.replays import Position, Replay, dlq_steps, latest, was_replayed
from console.step import Step
from events.registry import VISIT_COMPLETED, keyed_by, state_table
from events.topics import Topics
from sinks.email.render import clinic_recipients, message_id
from sinks.email.settings import EmailSettings

EVENT_COLUMNS = (
    "event_id, event, entity_id, received_at, disposition, success, inserted_at,"
    " clean_topic, clean_partition, clean_offset, phi_redacted_at"
)
KINDS = ("gfe_id", "treatment_id", "event_id", "location")


@dataclass(slots=True)
class Delivery:
    event_id: str
    event: str
    entity_id: str
    steps: list[Step] = field(default_factory=list)


def entity_of(event_id: str) -> tuple[str, str] | None:
    """``(event, entity_id)`` from ``event:entity:timestamp``, or None when malformed."""
    event, sep, rest = event_id.partition(":")
    entity, sep2, _ = rest.rpartition(":")
    return (event, entity) if sep and sep2 and entity else None


def raw_steps(deliveries: list[Found], published: int, clean_complete: bool) -> list[Step]:
    """The first delivery is received; later ones of the same event are "delivered again".

    A later delivery is called a dropped duplicate only when the clean topic,
    read in full for this key, carries the event fewer times than it was
    delivered (``published`` messages): after a worker restart dedupe may
    publish a delivery again, and an unread clean topic proves nothing.
    """
    steps = []
    for n, found in enumerate(sorted(deliveries, key=lambda f: f.offset)):
        where = f"{found.topic}[{found.partition}]@{found.offset}"
        if n == 0:
            steps.append(Step("ingress", "done", found.at, f"received, on {where}"))
        elif clean_complete and n >= published > 0:
            detail = f"delivered again ({where}): dropped duplicate"
            steps.append(Step("dedupe", "skipped", found.at, detail))
        elif n < published:
            detail = f"delivered again ({where}), published again to the clean topic"
            steps.append(Step("dedupe", "done", found.at, detail))
        else:
            steps.append(Step("ingress", "done", found.at, f"delivered again ({where})"))
    return steps


def source_of_row(row: Any) -> str:
    """Where the writer read a row from; rows written before migration 0003 did not record it."""
    if row["clean_topic"] is None:
        return "a clean-topic message not recorded (written before the console's migration)"
    return f"{row['clean_topic']}[{row['clean_partition']}]@{row['clean_offset']}"


def clean_step(
    row: asyncpg.Record | None, clean: Found | None, raw_at: datetime | None, complete: bool
) -> Step:
    if clean is not None:
        where = f"{clean.topic}[{clean.partition}]@{clean.offset}"
        verdict = clean.headers.get("disposition", "?")
        return Step("dedupe", "done", clean.at, f"verdict {verdict}, published on {where}")
    if row is not None:
        return Step(
            "dedupe", "done", None, f"verdict {row['disposition']}, read from {source_of_row(row)}"
        )
    if not complete:  # the message may be there, in what was not read
        detail = f"not found in the last {SCAN_LIMIT} messages of the clean topic read"
        return Step("dedupe", "unknown", raw_at, detail)
    return Step("dedupe", "waiting", raw_at, "not on the clean topic: the dedupe stage holds it")


def postgres_step(
    row: asyncpg.Record | None, visit: Any, since: datetime | None, letters: Sequence[Found] = ()
) -> Step:
    if row is None:
        dead = [f for f in letters if f.headers.get("stage") == "postgres"]
        if dead:
            return Step("postgres", "failed", dead[-1].at, "no row: in the DLQ since then")
        return Step("postgres", "waiting", since, "no row yet: the postgres stage holds it")
    applied = ""
    if state_table(row["event"]) == "gfe_visits":
        applied = (
            ", applied to gfe_visits"
            if visit is not None and visit["event_id"] == row["event_id"]
            else ", not applied (a newer visit, or not apply)"
        )
    detail = f"spakinect_events row written from {source_of_row(row)}{applied}"
    return Step("postgres", "done", row["inserted_at"], detail)


def email_step(
    event_id: str,
    disposition: str | None,
    visit: Any,
    sent: dict[str, Any] | None,
    email: EmailSettings,
    since: datetime | None,
) -> Step:
    if disposition is None:
        return Step("email", "waiting", since, "waits for the dedupe verdict")
    if disposition != "apply":
        return Step("email", "skipped", None, f"not emailed: the event is {disposition}")
    if visit is not None and visit["phi_redacted_at"] is not None:
        return Step("email", "skipped", None, "not emailed: the patient's data was erased")
    if sent is None or "clinic" not in (sent.get("done") or []):
        return Step("email", "waiting", since, "not sent yet: the email stage holds it")
    location = visit["location_id"] if visit is not None else None
    to = ", ".join(mask_email(a) for a in clinic_recipients(location, email))
    at = datetime.fromtimestamp(sent["at"] / 1000, tz=UTC) if sent.get("at") else None
    mid = message_id(event_id, "clinic", email.from_)
    # The send-once entry records that and when, not to whom: the rest is today's settings.
    return Step(
        "email",
        "done",
        at,
        f"sent to the clinic (by today's settings: to {to or '—'}, Message-ID {mid})",
    )


class Timelines:
    """Gathers a lookup's records from Postgres and Kafka and assembles the steps."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        kafka: KafkaView,
        topics: Topics,
        app_id: str,
        email: EmailSettings,
    ) -> None:
        self.pool, self.kafka, self.topics, self.email = pool, kafka, topics, email
        self.changelog = f"{app_id}-email-sent-changelog"

    async def entities(self, kind: str, query: str) -> list[tuple[str, str]]:
        """``(event, entity_id)`` pairs a query names."""
        if kind == "event_id":
            found = entity_of(query)
            return [found] if found else []
        if kind in ("gfe_id", "treatment_id"):
            return [(event, query) for event in keyed_by(kind)]
        rows = await self.pool.fetch(
            "SELECT gfe_id FROM gfe_visits WHERE location_id = $1 ORDER BY completed_at DESC"
            " LIMIT 20",
            query,
        )
        return [(event, r["gfe_id"]) for r in rows for event in keyed_by("gfe_id")]

    async def _keyed(self, topic: str, key: bytes) -> Scan:
        """The key's messages among the last :data:`SCAN_LIMIT` of its partition; complete
        only when that is the whole partition and the read got to its end."""
        tps = await self.kafka.partitions(topic)
        if not tps:
            return Scan()
        partition = partition_for(key, len(tps))
        end = await self.kafka.offset_at(topic, partition, 2**62)
        start = max(0, end - SCAN_LIMIT)
        scan = await self.kafka.scan(topic, partition, start, key=key)
        scan.complete = scan.complete and start <= await self.kafka.beginning(topic, partition)
        return scan

    async def visit(self, gfe_id: str) -> asyncpg.Record | None:
        return await self.pool.fetchrow(
            "SELECT gfe_id, location_id, status, event_id, updated_at, phi_redacted_at,"
            " patient_name, patient_first_name, patient_last_name, patient_email"
            " FROM gfe_visits WHERE gfe_id = $1",
            gfe_id,
        )

    async def deliveries(self, event: str, entity: str, only: str | None = None) -> list[Delivery]:
        """Every event of one entity (or only the event ``only``), newest first."""
        raw_topic, clean_topic = self.topics.raw_for(event), self.topics.clean_for(event)
        key = entity.encode()
        raw = (await self._keyed(raw_topic, key)).found if raw_topic else []
        clean = await self._keyed(clean_topic, key) if clean_topic else Scan()
        dead = await self._keyed(self.topics.dlq, key)
        rows = {
            r["event_id"]: r
            for r in await self.pool.fetch(
                f"SELECT {EVENT_COLUMNS} FROM spakinect_events WHERE entity_id = $1 AND event = $2",  # noqa: S608 - constant columns
                entity,
                event,
            )
        }
        visit = await self.visit(entity) if state_table(event) == "gfe_visits" else None
        ids = {f.headers.get("event_id", "") for f in raw} | set(rows)
        ids.discard("")
        if only is not None:
            ids &= {only}
        replays = await latest(self.pool, self.topics.dlq, event_ids=sorted(ids)) if ids else {}
        found = []
        for event_id in sorted(ids, reverse=True):
            found.append(
                await self._delivery(
                    event_id, event, entity, raw, clean, dead, rows, visit, replays
                )
            )
        return found

    async def _delivery(
        self,
        event_id: str,
        event: str,
        entity: str,
        raw: list[Found],
        clean: Scan,
        dead: Scan,
        rows: dict[str, asyncpg.Record],
        visit: Any,
        replays: dict[Position, Replay],
    ) -> Delivery:
        mine = [f for f in raw if f.headers.get("event_id") == event_id]
        row = rows.get(event_id)
        published_all = [f for f in clean.found if f.headers.get("event_id") == event_id]
        steps = raw_steps(mine, len(published_all), clean.complete)
        if not steps and row is not None:
            detail = f"received (its raw message is beyond the last {SCAN_LIMIT} read)"
            steps.append(Step("ingress", "done", row["received_at"], detail))
        received = steps[0].at if steps else None
        published = published_all[0] if published_all else None
        # The verdict right after the first delivery: later ones are judged by it.
        steps.insert(min(len(steps), 1), clean_step(row, published, received, clean.complete))
        disposition = (
            row["disposition"]
            if row
            else (published.headers.get("disposition") if published else None)
        )
        since = published.at if published else received
        letters = [f for f in dead.found if f.headers.get("event_id") == event_id]
        replayed, still_open = dlq_steps(
            [(f.at, f.partition, f.offset, f.headers) for f in letters], replays
        )
        steps.extend(replayed)  # failed, then replayed: before what the replay led to
        open_letters = [f for f in letters if not was_replayed((f.partition, f.offset), replays)]
        steps.append(postgres_step(row, visit, since, open_letters))
        if event == VISIT_COMPLETED:  # the email stage's event (sinks.email.render.wants_email)
            sent, read_all = await self._sent(event_id, published, row, received)
            step = email_step(event_id, disposition, visit, sent, self.email, since)
            if step.state == "waiting" and disposition is not None and not read_all:
                detail = f"no send found in the {SCAN_LIMIT} changelog messages read"
                step = Step("email", "unknown", since, detail)
            steps.append(step)
        steps.extend(still_open)  # the latest word on an event still in the DLQ
        return Delivery(event_id, event, entity, steps)

    async def _sent(
        self, event_id: str, published: Found | None, row: Any, received: datetime | None
    ) -> tuple[dict[str, Any] | None, bool]:
        """The email stage's send-once entry, read from its changelog partition (the clean
        message's partition) from the time the event was received; and whether that read
        got to the changelog's end."""
        partition = published.partition if published else (row["clean_partition"] if row else None)
        if partition is None or received is None or not await self.kafka.partitions(self.changelog):
            return None, True
        start = await self.kafka.offset_at(
            self.changelog, partition, int(received.timestamp() * 1000) - 1000
        )
        key = orjson.dumps(event_id)
        scan = await self.kafka.scan(self.changelog, partition, start, key=key)
        entries = scan.found
        if not entries or entries[-1].value is None:
            return None, scan.complete
        value = orjson.loads(entries[-1].value)
        return (value if isinstance(value, dict) else None), scan.complete
