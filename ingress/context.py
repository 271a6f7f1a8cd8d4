"""What a request handler needs, built once by the app factory and injected per request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from opentelemetry.trace import Tracer

from events.topics import Topics
from ingress.metrics import IngressMetrics
from ingress.sealing import Sealer
from ingress.settings import IngressSettings
from spakinect_pipeline.publisher import Publisher


@dataclass(frozen=True)
class IngressContext:
    settings: IngressSettings
    topics: Topics
    publisher: Publisher
    metrics: IngressMetrics
    tracer: Tracer | None = None  # None: tracing off (see spakinect_pipeline.tracing)
    sealer: Sealer | None = None  # None: PHI_KAFKA_SEAL off, bodies published as they came


async def get_context(request: Request) -> IngressContext:
    """Async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, a
    thread hand-off on every request for what is an attribute read."""
    ctx: IngressContext = request.app.state.ctx
    return ctx


Ctx = Annotated[IngressContext, Depends(get_context)]
