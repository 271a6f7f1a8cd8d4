"""The email stage: one email per applied visit, remembered by ``event_id`` so it is sent once.

Send-once state is a changelog-backed table (``sent``), so it survives
restarts and moves with its partitions. Each email is sent, then its mark is
published to the table's changelog and acked, then written to the local store,
and only then is the event acked: a commit never covers an email whose mark is
not durable, and a crash between a send and its mark costs at most one
repeated email. A revoke or a stop lets a send in flight finish and be marked
(docs/commit-protocol.md). The state holds no patient data (event ids, the
kinds sent, a time). A visit whose patient was forgotten (``phi forget``) is
not emailed (:mod:`sinks.email.forgotten`), nor one whose key on Kafka was
destroyed (a sealed visit: :mod:`spakinect_pipeline.phi.sealed_reader`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from events.envelope import Record
from events.registry import VISIT_COMPLETED
from sinks.email.forgotten import Markers, SkipForgotten
from sinks.email.notifier import EmailSink, sending_limiter
from sinks.email.render import KINDS, wants_email
from sinks.email.settings import EmailSettings, SmtpSettings
from sinks.postgres.erasure import ErasureMarkers
from sinks.postgres.settings import PostgresSettings
from spakinect_pipeline.config import load_settings
from spakinect_pipeline.phi.sealed_reader import SealedReader, stage_reader
from spakinect_pipeline.phi.settings import PhiSettings
from streams.batch_table import BatchTable, Table
from streams.delivery import Backoff, DeliveryStats, deliver
from streams.faust_app import json_table
from streams.fence import Revoked
from streams.handler import Batch, Handler, Shape
from streams.probes import smtp_check
from streams.runner import StageEnv, StageParts

log = logging.getLogger(__name__)
# One event at a time: an email is slow and its send is recorded before the next. Its
# mark is the only message in flight, so the producer need not linger for company.
SHAPE = Shape(batch_max=1, within_s=0, batch_span=False, linger_ms=0)


class EmailHandler(Handler):
    """Sends each applied visit's emails (one sink per kind), each kind once per ``event_id``.

    ``sent`` is the worker's Faust table read and written through
    :class:`~streams.batch_table.BatchTable` (its changelog awaited before the ack).
    """

    name = "email"
    shape = SHAPE

    def __init__(
        self,
        senders: Mapping[str, EmailSink],
        markers: Markers,
        sent: Table,
        max_backoff_s: float,
        reader: SealedReader | None = None,
    ) -> None:
        self.senders = senders
        self.markers = markers
        self.reader = reader
        self.sinks = {kind: SkipForgotten(s, markers, reader) for kind, s in senders.items()}
        self.sent = sent
        self.stats = DeliveryStats()
        self.backoff = Backoff(maximum=max_backoff_s)
        self.already_sent = 0

    async def start(self) -> None:
        if self.reader is not None:
            await self.reader.start()  # ConfigError: the master key does not open the key topic

    async def stop(self) -> None:
        for sender in self.senders.values():
            await sender.stop()  # QUIT the kept-open SMTP sessions
        if self.reader is not None:
            await self.reader.stop()
        await self.markers.stop()

    def counts(self) -> Mapping[str, float]:
        sent = {f"sent_{kind}": sink.sent for kind, sink in self.senders.items()}
        return {
            **sent,
            "forgotten": sum(s.skipped for s in self.sinks.values()),
            **self.stats.counts(),
            "already_sent": self.already_sent,
        }

    def gauges(self) -> Mapping[str, float]:
        return self.stats.gauges()

    async def handle(self, batch: Batch) -> None:
        for record in batch.records:
            if not wants_email(record.envelope):
                batch.outcome(record, "skipped")
                continue
            batch.outcome(record, await self._send_once(record, batch))

    async def _send_once(self, record: Record, batch: Batch) -> str:
        """Send each kind not yet sent; return ``sent``, ``already_sent`` or ``dead_lettered``."""
        event_id = record.envelope.event_id
        partition = record.source.partition
        held = self.sent.held(partition)
        state: dict[str, Any] = dict(self.sent.get_many(partition, [event_id])[0] or {"done": []})
        outcome = "already_sent"
        for kind, sink in self.sinks.items():
            if kind in state["done"]:
                self.already_sent += 1
                continue
            delivered = await deliver(
                sink, [record], batch.reject, self.backoff, self.stats, batch.ensure_owned
            )
            if delivered.dead_lettered:
                outcome = "dead_lettered"
                continue  # not sent: a replay from the DLQ will try this kind again
            if outcome == "already_sent":
                outcome = "sent"
            state = {"done": [*state["done"], kind], "at": int(time.time() * 1000)}
            await self._mark(batch, partition, event_id, state, held)
        return outcome

    async def _mark(
        self, batch: Batch, partition: int, event_id: str, state: dict[str, Any], held: Any
    ) -> None:
        """The changelog acked, then the local store: only then may the event be acked."""
        write = self.sent.prepare(partition, {event_id: state}, held)
        try:
            written = await batch.publish(write.messages)
        except Revoked:
            log.warning(
                "an email was sent after its partition was revoked and could not be marked: "
                "the partition's next owner may send it again",
                extra={"event_id": event_id},
            )
            raise
        self.sent.apply(write, written)


def build(env: StageEnv) -> StageParts:
    phi = load_settings(PhiSettings)
    markers = ErasureMarkers(load_settings(PostgresSettings).dsn, phi.blind_index())
    reader = stage_reader(env.kafka, phi)  # PHI_KAFKA_MASTER_KEYS when PHI_KAFKA_SEAL is on
    email, smtp = load_settings(EmailSettings), load_settings(SmtpSettings)
    limiter = sending_limiter(email)
    kinds = [k for k in KINDS if k == "clinic" or email.patient_notifications]
    senders = {kind: EmailSink(kind, email, smtp, limiter) for kind in kinds}
    sent = BatchTable(json_table(env.app, "sent", env.kafka.partitions))
    handler = EmailHandler(senders, markers, sent, env.streams.retry_max_backoff_s, reader)
    visits = env.topics.clean(VISIT_COMPLETED)
    return StageParts(
        handler,
        subscribe=[visits, env.topics.retry("email")],
        ready_on=[visits],
        checks={"smtp": smtp_check(smtp)},
    )
