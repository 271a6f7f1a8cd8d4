"""A stage's spans: each event in its own trace, the batch linking them, outcomes, failures."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode, Tracer

from events.messages import SourceMessage
from spakinect_pipeline.tracing import trace_headers
from streams.spans import NO_SPANS, batch_spans, event_spans
from tests.tracing_fixtures import assert_carries


def delivery(tracer: Tracer, offset: int, gfe_id: str) -> tuple[SourceMessage, ReadableSpan]:
    """A raw-topic message as the ingress writes it, and the ingress span it carries."""
    with tracer.start_as_current_span("ingress") as span:
        headers = [
            ("event", b"visit.completed"),
            ("event_id", f"visit.completed:{gfe_id}:1".encode()),
            *trace_headers(),
        ]
    value = b'{"payload": {"patient_details": {"name": "Jane Smith"}}}'
    source = SourceMessage("spakinect.visit-completed", 1, offset, gfe_id.encode(), value, headers)
    return source, span  # type: ignore[return-value]


def by_name(exporter: InMemorySpanExporter) -> dict[str, list[ReadableSpan]]:
    spans: dict[str, list[ReadableSpan]] = {}
    for span in exporter.get_finished_spans():
        spans.setdefault(span.name, []).append(span)
    return spans


def test_each_event_stays_in_its_own_trace_and_the_batch_links_them(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    (first, first_ingress), (second, second_ingress) = (
        delivery(tracer, 10, "gfe_a"),
        delivery(tracer, 11, "gfe_b"),
    )
    untraced = SourceMessage("spakinect.visit-completed", 1, 12, b"k", b"{}", [("event", b"x")])
    with batch_spans(tracer, "dedupe", [first, second, untraced]) as spans:
        spans.outcome(first, "published", "apply")
        spans.outcome(second, "duplicate")
        clean_headers = spans.headers(first)

    spans_by_name = by_name(exporter)
    (batch,) = spans_by_name["dedupe batch"]
    first_span, second_span = spans_by_name["dedupe visit.completed"]
    (untraced_span,) = spans_by_name["dedupe x"]
    for span, ingress in ((first_span, first_ingress), (second_span, second_ingress)):
        assert span.parent is not None
        assert span.parent.span_id == ingress.context.span_id
        assert span.context.trace_id == ingress.context.trace_id
        assert [link.context.span_id for link in span.links] == [batch.context.span_id]
    assert untraced_span.parent is None
    assert batch.parent is None
    assert batch.context.trace_id not in {
        s.context.trace_id for s in (first_ingress, second_ingress)
    }
    assert [link.context.span_id for link in batch.links] == [
        s.context.span_id for s in (first_span, second_span, untraced_span)
    ]
    assert batch.attributes is not None
    assert batch.attributes["messaging.batch.message_count"] == 3

    assert first_span.attributes is not None
    assert second_span.attributes is not None
    assert dict(first_span.attributes) == {
        "spakinect.stage": "dedupe",
        "messaging.system": "kafka",
        "messaging.operation.type": "process",
        "messaging.destination.name": "spakinect.visit-completed",
        "messaging.destination.partition.id": "1",
        "messaging.kafka.offset": 10,
        "spakinect.event": "visit.completed",
        "spakinect.event_id": "visit.completed:gfe_a:1",
        "spakinect.outcome": "published",
        "spakinect.disposition": "apply",
    }
    assert second_span.attributes["spakinect.outcome"] == "duplicate"
    assert untraced_span.attributes is not None
    assert untraced_span.attributes["spakinect.outcome"] == "done"

    # The clean message carries the event's dedupe span, so the sinks continue under it.
    assert_carries(clean_headers, first_span)


def test_a_failing_batch_marks_the_unfinished_events_as_errors(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    (written, _), (pending, _) = delivery(tracer, 1, "gfe_a"), delivery(tracer, 2, "gfe_b")

    def write_batch() -> None:
        with batch_spans(tracer, "postgres", [written, pending], done="written") as spans:
            spans.outcome(written, "dead_lettered")
            raise ConnectionError

    with pytest.raises(ConnectionError):
        write_batch()
    spans_by_name = by_name(exporter)
    (batch,) = spans_by_name["postgres batch"]
    dead, failed = spans_by_name["postgres visit.completed"]
    assert batch.status.status_code == StatusCode.ERROR
    assert dead.attributes is not None
    assert failed.attributes is not None
    assert dead.attributes["spakinect.outcome"] == "dead_lettered"
    assert dead.status.status_code == StatusCode.UNSET
    assert failed.attributes["spakinect.outcome"] == "failed"
    assert failed.status.status_code == StatusCode.ERROR
    assert failed.status.description == "ConnectionError"


def test_a_lone_event_gets_no_batch_span(tracer: Tracer, exporter: InMemorySpanExporter) -> None:
    source, ingress = delivery(tracer, 3, "gfe_c")
    with event_spans(tracer, "email", source) as spans:
        spans.outcome(source, "sent")
    (span,) = by_name(exporter)["email visit.completed"]
    assert span.parent is not None
    assert span.parent.span_id == ingress.context.span_id
    assert not span.links
    assert len(exporter.get_finished_spans()) == 2  # the ingress span and this one: no batch span


def test_no_span_says_anything_of_the_payload(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    source, _ = delivery(tracer, 4, "gfe_d")
    with batch_spans(tracer, "dedupe", [source]) as spans:
        spans.outcome(source, "published", "apply")
    text = repr([(s.name, dict(s.attributes or {})) for s in exporter.get_finished_spans()])
    assert "Jane" not in text
    assert "patient" not in text


def test_off_is_one_shared_object_doing_nothing() -> None:
    source = SourceMessage("t", 0, 0, None, None, [])
    spans = batch_spans(None, "dedupe", [source])
    assert spans is NO_SPANS
    assert event_spans(None, "email", source) is NO_SPANS
    with spans:
        spans.outcome(source, "published", "apply")
        assert spans.headers(source) == ()
