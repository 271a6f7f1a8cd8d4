"""A stage's spans: one per event in that event's own trace, one per batch linking them.

A stage handles many events at once, but each event belongs to the trace its
vendor delivery started (the ``traceparent`` its message carries). So every
event gets a span parented on its message's context — one delivery stays one
trace however it was batched — and the batch gets a span of its own (its own
trace: size, how long the write took) linked to each event's span, while each
event's span links back to the batch. In a trace viewer an event shows
ingress → dedupe → postgres and email; its links lead to the batch it was
written in, and the batch's links to its events (up to the SDK's link limit,
``OTEL_SPAN_LINK_COUNT_LIMIT``, 128 by default).

Span names and attributes carry the stage, the event type, ``event_id``,
topic, partition, offset, outcome and disposition: never the payload (it holds
patient data). With tracing off, stages use :data:`NO_SPANS`, whose methods
do nothing and allocate nothing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from types import TracebackType
from typing import Any

from opentelemetry.trace import Link, Span, SpanKind, StatusCode, Tracer, set_span_in_context

from events.messages import SourceMessage
from spakinect_pipeline.tracing import extract, trace_headers
from streams.source import Position, position

NO_HEADERS: tuple[tuple[str, bytes], ...] = ()


def _header(source: SourceMessage, name: str) -> str | None:
    for key, value in source.headers:
        if key == name:
            return value.decode("utf-8", "replace")
    return None


def event_attributes(stage: str, source: SourceMessage) -> dict[str, Any]:
    """What a span may say about an event: where it came from and its ids, nothing more."""
    attributes: dict[str, Any] = {
        "spakinect.stage": stage,
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": source.topic,
        "messaging.destination.partition.id": str(source.partition),
        "messaging.kafka.offset": source.offset,
    }
    for name in ("event", "event_id", "disposition"):
        value = _header(source, name)
        if value is not None:
            attributes[f"spakinect.{name}"] = value
    return attributes


class NoSpans:
    """Tracing off: the same calls as :class:`BatchSpans`, doing nothing."""

    def __enter__(self) -> NoSpans:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def headers(self, source: SourceMessage) -> Sequence[tuple[str, bytes]]:
        return NO_HEADERS

    def outcome(self, source: SourceMessage, outcome: str, disposition: str | None = None) -> None:
        return None


NO_SPANS = NoSpans()


class BatchSpans:
    """The spans of one batch (or one event, ``batch=False``), ended together on exit.

    Each event's span ends with the outcome set by :meth:`outcome`, else
    ``done``; when the block raises, those without one are marked as errors
    (the stage retries them, and a retry gets a span of its own in the same trace).
    """

    def __init__(
        self,
        tracer: Tracer,
        stage: str,
        sources: Sequence[SourceMessage],
        *,
        batch: bool = True,
        done: str = "done",
    ) -> None:
        self._done = done
        self._batch: Span | None = None
        links: list[Link] = []
        if batch:
            self._batch = tracer.start_span(
                f"{stage} batch",
                kind=SpanKind.CONSUMER,
                attributes={
                    "spakinect.stage": stage,
                    "messaging.system": "kafka",
                    "messaging.batch.message_count": len(sources),
                },
            )
            links.append(Link(self._batch.get_span_context()))
        self._events: dict[Position, Span] = {}
        self._outcomes: dict[Position, str] = {}
        for source in sources:
            attributes = event_attributes(stage, source)
            name = f"{stage} {attributes.get('spakinect.event', 'event')}"
            span = tracer.start_span(
                name,
                context=extract(source.headers),
                kind=SpanKind.CONSUMER,
                links=links,
                attributes=attributes,
            )
            self._events[position(source)] = span
            if self._batch is not None:
                self._batch.add_link(span.get_span_context())

    def __enter__(self) -> BatchSpans:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        end = time.time_ns()
        for key, span in self._events.items():
            outcome = self._outcomes.get(key)
            if outcome is None and exc_type is not None:
                span.set_status(StatusCode.ERROR, exc_type.__name__)
                outcome = "failed"
            span.set_attribute("spakinect.outcome", outcome or self._done)
            span.end(end)
        if self._batch is not None:
            if exc_type is not None:
                self._batch.set_status(StatusCode.ERROR, exc_type.__name__)
            self._batch.end(end)

    def headers(self, source: SourceMessage) -> Sequence[tuple[str, bytes]]:
        """The trace headers of ``source``'s span, for the message the stage writes from it."""
        return trace_headers(set_span_in_context(self._events[position(source)]))

    def outcome(self, source: SourceMessage, outcome: str, disposition: str | None = None) -> None:
        """What the stage did with the event: ``published``, ``duplicate``, ``written``, …"""
        key = position(source)
        self._outcomes[key] = outcome
        if disposition is not None:
            self._events[key].set_attribute("spakinect.disposition", disposition)


Spans = BatchSpans | NoSpans


def batch_spans(
    tracer: Tracer | None,
    stage: str,
    sources: Sequence[SourceMessage],
    *,
    batch: bool = True,
    done: str = "done",
) -> Spans:
    """The batch's spans, or :data:`NO_SPANS` when tracing is off."""
    if tracer is None:
        return NO_SPANS
    return BatchSpans(tracer, stage, sources, batch=batch, done=done)


def event_spans(tracer: Tracer | None, stage: str, source: SourceMessage) -> Spans:
    """The span of one event handled alone (no batch span), or :data:`NO_SPANS`."""
    if tracer is None:
        return NO_SPANS
    return BatchSpans(tracer, stage, (source,), batch=False)
