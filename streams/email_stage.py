"""The email stage: one email per applied visit, remembered by ``event_id`` so it is sent once.

Send-once state is a changelog-backed table (``sent``), so it survives
restarts and moves with its partitions. Each email is sent, then recorded,
then its event acked: a crash costs at most one repeated email. The state
holds no patient data (event ids, the kinds sent, a time). A visit whose
patient was forgotten (``phi forget``) is not emailed
(:mod:`sinks.email.forgotten`).
"""

from __future__ import annotations

import logging
import time
from typing import Any, cast

import faust
from opentelemetry.trace import Tracer

from events.envelope import EnvelopeInvalid, decode_envelope
from events.messages import SourceMessage
from events.topics import Topics
from sinks.base import Record
from sinks.email.forgotten import Markers, SkipForgotten
from sinks.email.notifier import EmailSink, sending_limiter
from sinks.email.render import KINDS, wants_email
from sinks.email.settings import EmailSettings, SmtpSettings
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.publisher import KafkaPublisher
from streams.acking import ack, unacked_events
from streams.delivery import Backoff, DeliveryStats, deliver
from streams.dlq import DeadLetters
from streams.faust_app import json_table, raw_topic
from streams.metrics import StageMetrics
from streams.settings import StreamsSettings
from streams.source import source_of
from streams.spans import Spans, event_spans

log = logging.getLogger(__name__)


class EmailStage:
    """A consumer group on the visits topic (and ``retry.email``) that sends emails."""

    def __init__(
        self,
        app: faust.App,
        streams: StreamsSettings,
        kafka: KafkaSettings,
        email: EmailSettings,
        smtp: SmtpSettings,
        markers: Markers,
        tracer: Tracer | None = None,
    ) -> None:
        self.tracer = tracer
        topics = Topics(kafka.topic_prefix)
        limiter = sending_limiter(email)
        kinds = [k for k in KINDS if k == "clinic" or email.patient_notifications]
        self.senders = {kind: EmailSink(kind, email, smtp, limiter) for kind in kinds}
        self.markers = markers
        self.sinks = {kind: SkipForgotten(s, markers) for kind, s in self.senders.items()}
        self.publisher = KafkaPublisher(kafka, client_id=streams.group_id("email"))
        self.dlq = DeadLetters(self.publisher, topics.dlq, "email")
        self.stats = DeliveryStats()
        self.backoff = Backoff(maximum=streams.retry_max_backoff_s)
        self.sent = json_table(app, "sent", kafka.partitions)
        self.already_sent = 0
        self.metrics = StageMetrics(app, "email", self._counts, self.stats.gauges)
        source = raw_topic(app, topics.visits, topics.retry("email"))
        app.agent(source, name="email-sink")(self._agent)
        app.on_before_shutdown.connect(cast(Any, self._on_shutdown))  # mode types signals loosely

    async def _on_shutdown(self, sender: Any, *args: Any, signal: Any, **kwargs: Any) -> None:
        await self.publisher.stop()
        await self.markers.stop()

    def _counts(self) -> dict[str, float]:
        sent = {f"sent_{kind}": sink.sent for kind, sink in self.senders.items()}
        return {
            **sent,
            "forgotten": sum(s.skipped for s in self.sinks.values()),
            **self.stats.counts(),
            "already_sent": self.already_sent,
            "dlq_messages": self.dlq.sent,
        }

    async def _dead_letter(self, record: Record, exc: BaseException, attempts: int) -> None:
        await self.dlq.send(
            record.source, error=str(exc), error_type=type(exc).__name__, attempts=attempts
        )

    async def _agent(self, stream: Any) -> None:
        async for event in unacked_events(stream):
            source = source_of(event)
            with event_spans(self.tracer, "email", source) as spans:
                await self._handle(source, spans)
            await ack(stream, event)

    async def _handle(self, source: SourceMessage, spans: Spans) -> None:
        try:
            envelope = decode_envelope(source.value)
        except EnvelopeInvalid as exc:
            await self.dlq.send(source, error=str(exc), error_type="EnvelopeInvalid")
            spans.outcome(source, "dead_lettered")
            return
        if not wants_email(envelope):
            spans.outcome(source, "skipped")
            return
        spans.outcome(source, await self._send_once(Record(envelope, source)))

    async def _send_once(self, record: Record) -> str:
        """Send each kind not yet sent; return ``sent``, ``already_sent`` or ``dead_lettered``."""
        event_id = record.envelope.event_id
        state = dict(self.sent.get(event_id) or {"done": []})
        outcome = "already_sent"
        for kind, sink in self.sinks.items():
            if kind in state["done"]:
                self.already_sent += 1
                continue
            dead_before = self.stats.dead_lettered
            await deliver(sink, [record], self._dead_letter, self.backoff, self.stats)
            if self.stats.dead_lettered != dead_before:
                outcome = "dead_lettered"
                continue  # not sent: a replay from the DLQ will try this kind again
            if outcome == "already_sent":
                outcome = "sent"
            state = {"done": [*state["done"], kind], "at": int(time.time() * 1000)}
            self.sent[event_id] = state
        return outcome
