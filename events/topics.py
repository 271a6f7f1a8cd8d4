"""Topic names (under ``KAFKA_TOPIC_PREFIX``) and header names: public contract.

The raw and clean topics of each event type come from :mod:`events.registry`.
"""

from __future__ import annotations

from dataclasses import dataclass

from events.registry import EVENT_TYPES, VISIT_COMPLETED

SINK_NAMES = ("postgres", "email")


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic the pipeline reads or writes, for one prefix."""

    prefix: str = "spakinect."

    def raw(self, event: str) -> str:
        """The raw topic of a registered event type: every delivery, duplicates included."""
        return self.prefix + EVENT_TYPES[event].raw_topic

    def clean(self, event: str) -> str:
        """The clean topic of a registered event type: each distinct event once."""
        return self.prefix + EVENT_TYPES[event].clean_topic

    @property
    def visits(self) -> str:
        """``clean(VISIT_COMPLETED)``, under the name the email stage reads it by."""
        return self.clean(VISIT_COMPLETED)

    @property
    def unrouted(self) -> str:
        return f"{self.prefix}unrouted"

    @property
    def rejected(self) -> str:
        return f"{self.prefix}rejected"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}dlq"

    def retry(self, sink: str) -> str:
        """DLQ messages re-delivered to the one sink that failed them."""
        return f"{self.prefix}retry.{sink}"

    def raw_topics(self) -> list[str]:
        """Every event type's raw topic, read by the dedupe stage."""
        return [self.prefix + t.raw_topic for t in EVENT_TYPES.values()]

    def clean_topics(self) -> list[str]:
        """Every event type's clean topic, read by the sinks."""
        return [self.prefix + t.clean_topic for t in EVENT_TYPES.values()]

    def phi_topics(self) -> list[str]:
        """The raw and clean topics of every event type whose payload can hold patient data."""
        return [
            self.prefix + name
            for t in EVENT_TYPES.values()
            if t.carries_phi
            for name in (t.raw_topic, t.clean_topic)
        ]

    def raw_for(self, event: str) -> str | None:
        """The raw topic of a known event type, or None for one we don't route."""
        event_type = EVENT_TYPES.get(event)
        return None if event_type is None else self.prefix + event_type.raw_topic

    def clean_for(self, event: str) -> str | None:
        event_type = EVENT_TYPES.get(event)
        return None if event_type is None else self.prefix + event_type.clean_topic

    def all(self) -> list[str]:
        """Every topic the project creates."""
        return [
            *self.raw_topics(),
            self.unrouted,
            self.rejected,
            *self.clean_topics(),
            self.dlq,
            *(self.retry(sink) for sink in SINK_NAMES),
        ]


def headers(**values: str) -> list[tuple[str, bytes]]:
    """Kafka headers from keyword values (UTF-8)."""
    return [(name, value.encode()) for name, value in values.items()]
