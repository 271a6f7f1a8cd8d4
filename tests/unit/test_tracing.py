"""Tracing's pure parts: when it is on, header round trips, the ingress span and its headers."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode, Tracer

from devstack.phi_keys import new_phi_env
from events.messages import SourceMessage, dlq_headers
from events.samples import SAMPLES
from ingress.app import create_app
from ingress.settings import IngressSettings
from spakinect_pipeline.config import ConfigError, KafkaSettings
from spakinect_pipeline.tracing import (
    ENV_NAMES,
    carried,
    exporter_from_env,
    extract,
    trace_headers,
)
from streams.dlq_tools import DeadLetter, replay_headers
from tests.helpers import RecordingPublisher
from tests.tracing_fixtures import assert_carries

PHI = ("Jane", "Smith", "jane.smith@example.com")


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"OTEL_SERVICE_NAME": "x"}, None),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, "otlp"),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://c:4318/v1/traces"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, "otlp"),
        ({"OTEL_TRACES_EXPORTER": " Console "}, "console"),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c"}, None),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, None),
        ({"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf"}, "otlp"),
        (
            {
                "OTEL_TRACES_EXPORTER": "otlp",
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/protobuf",
                "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc",
            },
            "otlp",
        ),
    ],
)
def test_tracing_is_off_unless_the_env_asks(env: dict[str, str], expected: str | None) -> None:
    assert exporter_from_env(env) == expected


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        ({"OTEL_TRACES_EXPORTER": "jaeger"}, "OTEL_TRACES_EXPORTER"),
        (
            {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://c", "OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"},
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ),
        (
            {"OTEL_TRACES_EXPORTER": "otlp", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL": "http/json"},
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        ),
    ],
)
def test_a_wrong_tracing_setting_names_its_variable(env: dict[str, str], variable: str) -> None:
    with pytest.raises(ConfigError, match=variable):
        exporter_from_env(env)


OFF_PROBE = """
import sys
from opentelemetry import trace
from ingress.app import create_app
from ingress.settings import IngressSettings
from spakinect_pipeline.config import KafkaSettings
from streams.spans import NO_SPANS, batch_spans, event_spans
from streams.worker import build_stage
from tests.helpers import RecordingPublisher

app = create_app(IngressSettings(allow_unauthenticated=True), KafkaSettings(), RecordingPublisher())
assert app.state.ctx.tracer is None
build_stage("dedupe")
build_stage("email")
assert batch_spans(None, "dedupe", []) is NO_SPANS and event_spans(None, "email", None) is NO_SPANS
assert NO_SPANS.headers(None) is NO_SPANS.headers(None)  # the same empty tuple: no allocation
assert type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider"
loaded = sorted(name for name in sys.modules if name.startswith("opentelemetry.sdk"))
assert not loaded, loaded
print("off")
"""


def test_with_tracing_off_no_sdk_is_loaded_and_no_provider_installed(tmp_path: object) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(STREAMS_STATE_DIR=str(tmp_path), STREAMS_STORE="memory", **new_phi_env())
    result = subprocess.run(
        [sys.executable, "-c", OFF_PROBE], env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("off")


def test_trace_headers_round_trip_through_kafka_headers(tracer: Tracer) -> None:
    with tracer.start_as_current_span("ingress") as span:
        headers = trace_headers()
    (name, value), *rest = headers
    assert name == "traceparent"
    assert not rest
    context = span.get_span_context()
    version, trace_id, span_id, flags = value.decode().split("-")
    assert (version, trace_id, span_id) == (
        "00",
        f"{context.trace_id:032x}",
        f"{context.span_id:016x}",
    )
    assert int(flags, 16) & 1  # sampled

    message_headers = [("event", b"visit.completed"), *headers, ("event_id", b"e1")]
    with tracer.start_as_current_span("dedupe", context=extract(message_headers)) as child:
        pass
    assert child.parent is not None
    assert child.parent.span_id == context.span_id
    assert child.get_span_context().trace_id == context.trace_id


def test_tracestate_travels_too(tracer: Tracer) -> None:
    incoming = [
        ("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        ("tracestate", b"vendor=abc"),
    ]
    with tracer.start_as_current_span("stage", context=extract(incoming)):
        outgoing = dict(trace_headers())
    assert outgoing["tracestate"] == b"vendor=abc"
    assert outgoing["traceparent"].startswith(b"00-0af7651916cd43dd8448eb211c80319c-")


@pytest.mark.parametrize(
    "headers",
    [[], [("event", b"x")], [("traceparent", b"garbage")], [("traceparent", b"\xff\xfe")]],
)
def test_without_a_valid_traceparent_a_span_starts_its_own_trace(
    tracer: Tracer, headers: list[tuple[str, bytes]]
) -> None:
    with tracer.start_as_current_span("stage", context=extract(headers)) as span:
        pass
    assert span.parent is None


def test_carried_picks_only_the_trace_headers() -> None:
    headers = [("event", b"x"), ("traceparent", b"tp"), ("tracestate", b"ts"), ("reason", b"r")]
    assert carried(headers) == [("traceparent", b"tp"), ("tracestate", b"ts")]


def test_dead_letters_and_their_replays_keep_the_trace_headers() -> None:
    trace = [("traceparent", b"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01")]
    source = SourceMessage("spakinect.visits", 0, 5, b"g", b"{}", [("event", b"x"), *trace])
    dead = dlq_headers(source, error="e", error_type="InvalidBatch", stage="email", attempts=1)
    assert carried(dead) == trace
    letter = DeadLetter(
        9,
        0,
        None,
        b"g",
        b"{}",
        {},
        dead,  # type: ignore[arg-type]
    )
    assert carried(replay_headers(letter)) == trace


@pytest.fixture
def traced_ingress(tracer: Tracer) -> Iterator[tuple[TestClient, RecordingPublisher]]:
    publisher = RecordingPublisher()
    app = create_app(
        IngressSettings(allow_unauthenticated=True), KafkaSettings(), publisher, tracer
    )
    with TestClient(app) as client:
        yield client, publisher


def _attribute_values(span: ReadableSpan) -> str:
    return " ".join(f"{k}={v}" for k, v in (span.attributes or {}).items()) + span.name


def test_the_ingress_request_span_is_the_root_its_message_carries(
    traced_ingress: tuple[TestClient, RecordingPublisher], exporter: InMemorySpanExporter
) -> None:
    client, publisher = traced_ingress
    outside = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00"
    response = client.post(
        "/webhooks/visit-completed?token=s3cret",
        json=SAMPLES["visit.completed"],
        headers={"traceparent": outside},
    )
    assert response.status_code == 200
    (span,) = exporter.get_finished_spans()
    assert span.name == "POST /webhooks/visit-completed"
    assert span.kind == SpanKind.SERVER
    assert span.parent is None  # the sender's traceparent is not trusted
    attributes = dict(span.attributes or {})
    assert attributes["http.response.status_code"] == 200
    assert attributes["spakinect.event_id"] == "visit.completed:gfe_abc123xyz789:1714675200000"
    assert attributes["messaging.destination.name"] == "spakinect.visit-completed"
    text = _attribute_values(span)
    assert not any(value in text for value in (*PHI, "s3cret"))

    ((_, _, _, headers),) = publisher.messages
    assert_carries(headers, span)


def test_refused_bodies_carry_the_trace_and_503s_are_errors(
    tracer: Tracer, exporter: InMemorySpanExporter
) -> None:
    publisher = RecordingPublisher()
    app = create_app(
        IngressSettings(allow_unauthenticated=True), KafkaSettings(), publisher, tracer
    )
    with TestClient(app) as client:
        body = {**SAMPLES["visit.completed"], "timestamp": "not a time"}
        assert client.post("/webhooks/visit-completed", json=body).status_code == 422
        ((topic, _, _, headers),) = publisher.messages
        assert topic == "spakinect.rejected"
        assert [name for name, _ in carried(headers)] == ["traceparent"]
        publisher.fail = True
        assert client.post("/webhooks", json=SAMPLES["visit.completed"]).status_code == 503
    refused, failed = exporter.get_finished_spans()
    assert refused.attributes is not None
    assert refused.attributes["spakinect.refused_reason"] == "schema"
    assert refused.status.status_code == StatusCode.UNSET
    assert failed.name == "POST /webhooks"
    assert failed.status.status_code == StatusCode.ERROR
    assert not any(value in _attribute_values(s) for s in (refused, failed) for value in PHI)


def test_with_tracing_off_the_ingress_writes_only_the_contract_headers() -> None:
    publisher = RecordingPublisher()
    app = create_app(IngressSettings(allow_unauthenticated=True), KafkaSettings(), publisher)
    with TestClient(app) as client:
        assert client.post("/webhooks", json=SAMPLES["visit.completed"]).status_code == 200
    ((_, _, _, headers),) = publisher.messages
    assert [name for name, _ in headers] == ["event", "event_id"]


def test_the_documented_tracing_variables_are_the_sdks_own() -> None:
    from opentelemetry import environment_variables as api
    from opentelemetry.sdk import environment_variables as sdk

    names = {n for module in (api, sdk) for n in dir(module) if n.startswith("OTEL_")}
    assert set(ENV_NAMES) <= names
