"""An SDK tracer whose finished spans land in memory, for tests of what spans say."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Tracer, get_current_span

from spakinect_pipeline.tracing import Headers, extract


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def tracer(exporter: InMemorySpanExporter) -> Tracer:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider.get_tracer("test")


def assert_carries(headers: Headers, span: ReadableSpan) -> None:
    """``headers`` hold ``span``'s context: whoever reads the message continues under it."""
    carried = get_current_span(extract(headers)).get_span_context()
    assert span.context is not None
    assert (carried.trace_id, carried.span_id) == (span.context.trace_id, span.context.span_id)
