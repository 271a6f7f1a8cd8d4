"""The Kafka messages every layer passes around, and the dead-letter headers: contract, pure.

:class:`SourceMessage` is what a stage read (enough to dead-letter and replay
it); streams and sinks both use it, so it lives here, below both.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """Where a message came from, enough to dead-letter and replay it."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]]


# The headers a dead letter carries besides its source's own (docs/contract.md, Topics: the DLQ).
DLQ_ERROR_HEADERS = (
    "error",
    "error_type",
    "stage",
    "source_topic",
    "source_partition",
    "source_offset",
    "attempts",
)


def dlq_headers(
    source: SourceMessage, *, error: str, error_type: str, stage: str, attempts: int
) -> list[tuple[str, bytes]]:
    """The source headers first, then the contract's error headers (which win on replay)."""
    values = (
        error,
        error_type,
        stage,
        source.topic,
        str(source.partition),
        str(source.offset),
        str(attempts),
    )
    ours = dict(zip(DLQ_ERROR_HEADERS, values, strict=True))
    kept = [(k, v) for k, v in source.headers if k not in ours]
    return kept + [(k, v.encode()) for k, v in ours.items()]
