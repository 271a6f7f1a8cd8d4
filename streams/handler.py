"""What a stage is: a handler of decoded batches, and what the runner gives it to work with.

A stage's own code is a :class:`Handler`: it gets a :class:`Batch` of decoded
records and decides what to do with them. Everything else — subscribing,
decoding (an undecodable message is dead-lettered before the handler sees
it), batching, publishing until acked, dead letters, spans, metrics, acks and
shutdown — is the runner's (:mod:`streams.runner`), written once.

:func:`process` is the runner's work on one batch without Faust, so a
handler's whole path unit-tests with an in-memory publisher.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from opentelemetry.trace import Tracer

from events.envelope import EnvelopeInvalid, Record, decode_envelope
from events.messages import SourceMessage
from spakinect_pipeline.logs import error_facts
from spakinect_pipeline.publisher import Message, Publisher, Written
from streams.delivery import Backoff, until_acked
from streams.dlq import DeadLetters
from streams.fence import Revoked
from streams.spans import Spans, batch_spans, event_spans

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Shape:
    """How the runner feeds a handler and traces its batches."""

    batch_max: int
    # How long to wait for more events once one arrived (0: what is there); only while
    # the recent rate would bring more in that time (spakinect_pipeline.rate_wait).
    within_s: float
    batch_span: bool = True  # one span per batch linking its events; False: event spans only
    done: str = "done"  # the span outcome of an event the handler gave none
    linger_ms: int = 5  # how long the stage's publisher waits to fill a produce request
    # What an unexpected error (not a reject) in a batch does. "escape": it leaves the
    # runner, nothing of the batch is acked, the agent restarts and the batch comes back
    # (a handler whose side effects must not run twice at once, such as an email).
    # "isolate": every message of the batch is run again alone, from its raw bytes, and
    # one that still raises is dead-lettered.
    on_error: Literal["escape", "isolate"] = "escape"


class Handler:
    """A stage's own logic; subclasses override :meth:`handle` and what they need.

    ``handle`` gets every record of a batch at once (batch in, outcomes out
    through :class:`Batch`). It may report a record it cannot handle with
    :meth:`Batch.reject` (dead-lettered with that error) or raise: what the
    runner then does is the stage's :attr:`Shape.on_error`.
    """

    name: str
    shape: Shape

    async def handle(self, batch: Batch) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        """Called when the stage's agent starts (again after a restart)."""

    async def stop(self) -> None:
        """Called once on shutdown, before the publisher stops."""

    def counts(self) -> Mapping[str, float]:
        """Counters for ``streams_events{stage,outcome}``."""
        return {}

    def gauges(self) -> Mapping[str, float]:
        """Values for ``streams_state{stage,name}``."""
        return {}


def owned_always() -> None:
    """Outside a worker no partition moves: every batch stays owned."""


@dataclass
class Tools:
    """What the runner holds for a stage: its publisher, DLQ, tracer and partition fence.

    ``guard`` raises :class:`~streams.fence.Revoked` once the current batch's
    partitions have moved to another worker (the runner sets it per batch).
    """

    stage: str
    publisher: Publisher
    dlq: DeadLetters
    tracer: Tracer | None = None
    guard: Callable[[], None] = owned_always
    publish_backoff: Backoff = field(default_factory=lambda: Backoff(initial=0.2, maximum=10))


class Batch:
    """One batch given to a handler: its records, and the runner's services for them."""

    def __init__(self, records: Sequence[Record], tools: Tools, spans: Spans) -> None:
        self.records = records
        self._tools = tools
        self._spans = spans

    def ensure_owned(self) -> None:
        """Raise :class:`~streams.fence.Revoked` if the batch's partitions moved meanwhile.

        Called before every side effect (a publish, a table write, an email, a row):
        a batch of a revoked partition writes nothing more.
        """
        self._tools.guard()

    async def publish(self, messages: Sequence[Message]) -> Sequence[Written]:
        """Publish in one round trip, retried until acked (Kafka down pauses, loses nothing).

        Returns where each message was stored, in order. Each attempt first checks the
        batch still owns its partitions.
        """
        if not messages:
            return []
        tools = self._tools
        written: Sequence[Written] = []

        async def write() -> None:
            nonlocal written
            tools.guard()
            written = await tools.publisher.publish_many(messages, timeout=10)

        await until_acked(write, tools.publish_backoff, f"{tools.stage} publish")
        return written

    async def reject(self, record: Record, exc: BaseException, attempts: int = 1) -> None:
        """Dead-letter ``record`` with ``exc``'s class and text (texts never quote values)."""
        self._tools.guard()
        await self._tools.dlq.send(
            record.source, error=str(exc), error_type=type(exc).__name__, attempts=attempts
        )
        self._spans.outcome(record.source, "dead_lettered")

    def outcome(self, record: Record, outcome: str, disposition: str | None = None) -> None:
        """What the handler did with ``record`` (its span's ``spakinect.outcome``)."""
        self._spans.outcome(record.source, outcome, disposition)

    def trace_headers(self, record: Record) -> Sequence[tuple[str, bytes]]:
        """Trace context for a message written from ``record`` (empty with tracing off)."""
        return self._spans.headers(record.source)


def spans_for(shape: Shape, tools: Tools, sources: Sequence[SourceMessage]) -> Spans:
    if shape.batch_span:
        return batch_spans(tools.tracer, tools.stage, sources, done=shape.done)
    if len(sources) == 1:
        return event_spans(tools.tracer, tools.stage, sources[0])
    return batch_spans(tools.tracer, tools.stage, sources, batch=False, done=shape.done)


async def process(handler: Handler, sources: Sequence[SourceMessage], tools: Tools) -> None:
    """Decode, hand over, dead-letter: return once every message is handled or dead-lettered.

    Anything else raises, and the runner acks nothing of the batch.
    """
    tools.dlq.begin_batch()
    try:
        with spans_for(handler.shape, tools, sources) as spans:
            records = await _decode(sources, tools, spans)
            if records:
                await handler.handle(Batch(records, tools, spans))
    except (asyncio.CancelledError, Revoked):
        raise
    except Exception as exc:
        if handler.shape.on_error == "escape":
            raise
        log.error(
            "%s batch failed; retrying its events one by one", tools.stage, extra=error_facts(exc)
        )
        for source in sources:  # every message, not only those decoded before the error
            if not tools.dlq.holds(source):
                await _alone(handler, source, tools)
    tools.dlq.settle(sources)


async def _decode(sources: Sequence[SourceMessage], tools: Tools, spans: Spans) -> list[Record]:
    records: list[Record] = []
    for source in sources:
        try:
            records.append(Record(decode_envelope(source.value), source))
        except EnvelopeInvalid as exc:
            tools.guard()
            await tools.dlq.send(source, error=str(exc), error_type="EnvelopeInvalid")
            spans.outcome(source, "dead_lettered")
    return records


async def _alone(handler: Handler, source: SourceMessage, tools: Tools) -> None:
    """Run one message alone from its raw bytes; dead-letter it if it still raises."""
    try:
        with spans_for(handler.shape, tools, [source]) as spans:
            records = await _decode([source], tools, spans)
            if records:
                await handler.handle(Batch(records, tools, spans))
    except (asyncio.CancelledError, Revoked):
        raise
    except Exception as exc:  # noqa: BLE001 - isolated and dead-lettered, class only logged
        log.error("%s failed for a message; dead-lettering it", tools.stage, extra=error_facts(exc))
        tools.guard()
        await tools.dlq.send(
            source,
            error=f"unexpected error in the {tools.stage} stage",
            error_type=type(exc).__name__,
        )
