"""One trace per vendor delivery: OpenTelemetry, off unless the standard ``OTEL_*`` env says so.

The ingress request span's context travels in Kafka headers (W3C
``traceparent``, and ``tracestate`` when there is one) to the dedupe stage,
which puts its own span's context on the clean topic's message, where the
Postgres and email stages continue it. Formatting and parsing of the headers
is the SDK's W3C propagator; only the adapter to Kafka's header list is ours.

Tracing is on when ``OTEL_TRACES_EXPORTER`` is ``otlp`` or ``console``, or
when an OTLP endpoint (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set; ``OTEL_SDK_DISABLED=true`` or
``OTEL_TRACES_EXPORTER=none`` turn it off. Everything else (service name,
resource attributes, sampler, batch delays, exporter headers and timeout) is
read by the SDK itself from its usual variables. Off, no SDK is imported and
no provider is installed: callers hold ``None`` instead of a tracer and skip
all span work behind one ``is None`` check.

The tracer is handed to the ingress and the stages explicitly, and the global
provider is left alone: FastAPI's own request spans (which would record the
query string, where the shared secret may travel as ``?token=``) stay off.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

from opentelemetry.context import Context
from opentelemetry.propagators.textmap import Getter
from opentelemetry.trace import Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from spakinect_pipeline.config import ConfigError

Headers = Sequence[tuple[str, bytes]]

TRACE_HEADERS = ("traceparent", "tracestate")
# The standard variables an operator sets to trace the pipeline (the SDK reads more).
ENV_NAMES = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TIMEOUT",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "OTEL_TRACES_SAMPLER",
    "OTEL_TRACES_SAMPLER_ARG",
    "OTEL_BSP_SCHEDULE_DELAY",
)
EXPORTERS = ("otlp", "console")
OTLP_PROTOCOL = "http/protobuf"

_PROPAGATOR = TraceContextTextMapPropagator()


class _KafkaHeaders(Getter[Headers]):
    """Reads W3C fields from a Kafka header list (names as written, values as bytes)."""

    def get(self, carrier: Headers, key: str) -> list[str] | None:
        values = [value.decode("latin-1") for name, value in carrier if name == key]
        return values or None

    def keys(self, carrier: Headers) -> list[str]:
        return [name for name, _ in carrier]


_GETTER = _KafkaHeaders()


def extract(headers: Headers) -> Context:
    """The trace context a message carries (an empty context when it carries none)."""
    return _PROPAGATOR.extract(headers, getter=_GETTER)


def trace_headers(context: Context | None = None) -> list[tuple[str, bytes]]:
    """``traceparent`` (and ``tracestate``) of the span in ``context`` (default: current)."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=context)
    return [(name, value.encode("latin-1")) for name, value in carrier.items()]


def carried(headers: Iterable[tuple[str, bytes]]) -> list[tuple[str, bytes]]:
    """The trace headers among ``headers``, for a message re-published on another's behalf."""
    return [(name, value) for name, value in headers if name in TRACE_HEADERS]


def exporter_from_env(environ: Mapping[str, str]) -> str | None:
    """``otlp``, ``console`` or None (tracing off), from the standard OTel variables."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    name = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not name:
        endpoint = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        name = "otlp" if endpoint else "none"
    if name == "none":
        return None
    if name not in EXPORTERS:
        raise ConfigError(
            "invalid configuration: OTEL_TRACES_EXPORTER: expected otlp, console or none"
        )
    if name == "otlp":
        for variable in ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_EXPORTER_OTLP_PROTOCOL"):
            protocol = environ.get(variable, "").strip()
            if protocol and protocol != OTLP_PROTOCOL:
                raise ConfigError(
                    f"invalid configuration: {variable}: only {OTLP_PROTOCOL} is supported "
                    "(the collector's OTLP/HTTP port, usually 4318)"
                )
            if protocol:
                break
    return name


def tracer_from_env(service: str, environ: Mapping[str, str] | None = None) -> Tracer | None:
    """A tracer exporting per the env, or None when tracing is off.

    ``service`` names the process when neither ``OTEL_SERVICE_NAME`` nor
    ``service.name`` in ``OTEL_RESOURCE_ATTRIBUTES`` does. Spans are batched
    and exported from a background thread; the SDK flushes them at exit.
    """
    environ = os.environ if environ is None else environ
    exporter_name = exporter_from_env(environ)
    if exporter_name is None:
        return None
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import (
        BatchSpanProcessor,
        ConsoleSpanExporter,
        SpanExporter,
    )

    resource = Resource.create()
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: service}))
    exporter: SpanExporter
    if exporter_name == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        exporter = OTLPSpanExporter()
    else:
        exporter = ConsoleSpanExporter()
    provider = TracerProvider(resource=resource)
    provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider.get_tracer("spakinect_pipeline")
