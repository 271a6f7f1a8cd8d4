"""Turn a Faust event into our plain :class:`SourceMessage` (the only Faust-aware bit)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from events.messages import SourceMessage

Position = tuple[str, int, int]


def position(source: SourceMessage) -> Position:
    """Topic, partition and offset: what tells one message from every other."""
    return source.topic, source.partition, source.offset


def source_of(event: Any) -> SourceMessage:
    message = event.message
    raw_headers: Any = message.headers or ()
    headers: Sequence[tuple[str, bytes]]
    headers = list(raw_headers.items()) if isinstance(raw_headers, Mapping) else list(raw_headers)
    return SourceMessage(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        headers=headers,
    )
