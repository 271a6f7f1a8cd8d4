"""What a request handler needs, built once by the app factory and injected per request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Protocol

from fastapi import Depends, Request
from opentelemetry.trace import Tracer

from events.topics import Topics
from ingress.metrics import IngressMetrics
from ingress.settings import IngressSettings
from spakinect_pipeline.publisher import Headers


class Publisher(Protocol):
    """Writes one message durably (or raises PublishFailed); see KafkaPublisher."""

    last_metadata_ok: float | None

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def publish(
        self,
        topic: str,
        value: bytes,
        *,
        key: bytes | None,
        headers: Headers = (),
        timeout: float,
    ) -> None: ...

    async def refresh_metadata(self, topics: list[str], timeout: float = 5.0) -> bool: ...


@dataclass(frozen=True)
class IngressContext:
    settings: IngressSettings
    topics: Topics
    publisher: Publisher
    metrics: IngressMetrics
    tracer: Tracer | None = None  # None: tracing off (see spakinect_pipeline.tracing)


async def get_context(request: Request) -> IngressContext:
    """Async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, a
    thread hand-off on every request for what is an attribute read."""
    ctx: IngressContext = request.app.state.ctx
    return ctx


Ctx = Annotated[IngressContext, Depends(get_context)]
