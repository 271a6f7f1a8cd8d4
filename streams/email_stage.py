"""The email stage: one email per applied visit, remembered by ``event_id`` so it is sent once.

Send-once state is a changelog-backed table (``sent``), so it survives
restarts and moves with its partitions. Each email is sent, then recorded,
then its event acked: a crash costs at most one repeated email. The state
holds no patient data (event ids, the kinds sent, a time). A visit whose
patient was forgotten (``phi forget``) is not emailed
(:mod:`sinks.email.forgotten`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, MutableMapping
from typing import Any

from sinks.base import Record
from sinks.email.forgotten import Markers, SkipForgotten
from sinks.email.notifier import EmailSink, sending_limiter
from sinks.email.render import KINDS, wants_email
from sinks.email.settings import EmailSettings, SmtpSettings
from sinks.postgres.erasure import ErasureMarkers
from sinks.postgres.settings import PostgresSettings
from spakinect_pipeline.config import load_settings
from spakinect_pipeline.phi.settings import PhiSettings
from streams.delivery import Backoff, DeadLetter, DeliveryStats, deliver
from streams.faust_app import json_table
from streams.handler import Batch, Handler, Shape
from streams.probes import smtp_check
from streams.runner import StageEnv, StageParts

# One event at a time: an email is slow and its send is recorded before the next.
SHAPE = Shape(batch_max=1, within_s=0, batch_span=False)


class EmailHandler(Handler):
    """Sends each applied visit's emails (one sink per kind), each kind once per ``event_id``.

    ``sent`` is the Faust table in a worker, a plain dict in unit tests.
    """

    name = "email"
    shape = SHAPE

    def __init__(
        self,
        senders: Mapping[str, EmailSink],
        markers: Markers,
        sent: MutableMapping[str, Any],
        max_backoff_s: float,
    ) -> None:
        self.senders = senders
        self.markers = markers
        self.sinks = {kind: SkipForgotten(s, markers) for kind, s in senders.items()}
        self.sent = sent
        self.stats = DeliveryStats()
        self.backoff = Backoff(maximum=max_backoff_s)
        self.already_sent = 0

    async def stop(self) -> None:
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
            batch.focus(record)
            if not wants_email(record.envelope):
                batch.outcome(record, "skipped")
                continue
            batch.outcome(record, await self._send_once(record, batch.reject))

    async def _send_once(self, record: Record, dead_letter: DeadLetter) -> str:
        """Send each kind not yet sent; return ``sent``, ``already_sent`` or ``dead_lettered``."""
        event_id = record.envelope.event_id
        state = dict(self.sent.get(event_id) or {"done": []})
        outcome = "already_sent"
        for kind, sink in self.sinks.items():
            if kind in state["done"]:
                self.already_sent += 1
                continue
            dead_before = self.stats.dead_lettered
            await deliver(sink, [record], dead_letter, self.backoff, self.stats)
            if self.stats.dead_lettered != dead_before:
                outcome = "dead_lettered"
                continue  # not sent: a replay from the DLQ will try this kind again
            if outcome == "already_sent":
                outcome = "sent"
            state = {"done": [*state["done"], kind], "at": int(time.time() * 1000)}
            self.sent[event_id] = state
        return outcome


def build(env: StageEnv) -> StageParts:
    markers = ErasureMarkers(
        load_settings(PostgresSettings).dsn, load_settings(PhiSettings).blind_index()
    )
    email, smtp = load_settings(EmailSettings), load_settings(SmtpSettings)
    limiter = sending_limiter(email)
    kinds = [k for k in KINDS if k == "clinic" or email.patient_notifications]
    senders = {kind: EmailSink(kind, email, smtp, limiter) for kind in kinds}
    sent = json_table(env.app, "sent", env.kafka.partitions)
    handler = EmailHandler(senders, markers, sent, env.streams.retry_max_backoff_s)
    visits = env.topics.visits
    return StageParts(
        handler,
        subscribe=[visits, env.topics.retry("email")],
        ready_on=[visits],
        checks={"smtp": smtp_check(smtp)},
    )
