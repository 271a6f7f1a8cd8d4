"""Topic names (under ``KAFKA_TOPIC_PREFIX``) and header names: public contract."""

from __future__ import annotations

from dataclasses import dataclass

SINK_NAMES = ("postgres", "email")


@dataclass(frozen=True, slots=True)
class Topics:
    """Every topic the pipeline reads or writes, for one prefix."""

    prefix: str = "spakinect."

    @property
    def visit_completed(self) -> str:
        """Raw ``visit.completed`` events keyed by gfe_id; may hold duplicates."""
        return f"{self.prefix}visit-completed"

    @property
    def treatment_updated(self) -> str:
        """Raw ``treatment.updated`` events keyed by treatment_id; may hold duplicates."""
        return f"{self.prefix}treatment-updated"

    @property
    def unrouted(self) -> str:
        return f"{self.prefix}unrouted"

    @property
    def rejected(self) -> str:
        return f"{self.prefix}rejected"

    @property
    def visits(self) -> str:
        """Clean visits: one message per distinct event, with a disposition."""
        return f"{self.prefix}visits"

    @property
    def treatments(self) -> str:
        return f"{self.prefix}treatments"

    @property
    def dlq(self) -> str:
        return f"{self.prefix}dlq"

    def retry(self, sink: str) -> str:
        """DLQ messages re-delivered to the one sink that failed them."""
        return f"{self.prefix}retry.{sink}"

    def raw_topics(self) -> list[str]:
        """Every raw topic, read by the dedupe stage."""
        return [self.visit_completed, self.treatment_updated]

    def clean_topics(self) -> list[str]:
        """Every clean topic, read by the sinks."""
        return [self.visits, self.treatments]

    def raw_for(self, event: str) -> str | None:
        """The raw topic of a known event type, or None for one we don't route."""
        return {
            "visit.completed": self.visit_completed,
            "treatment.updated": self.treatment_updated,
        }.get(event)

    def clean_for(self, event: str) -> str | None:
        return {"visit.completed": self.visits, "treatment.updated": self.treatments}.get(event)

    def all(self) -> list[str]:
        """Every topic the project creates."""
        return [
            self.visit_completed,
            self.treatment_updated,
            self.unrouted,
            self.rejected,
            self.visits,
            self.treatments,
            self.dlq,
            *(self.retry(sink) for sink in SINK_NAMES),
        ]


def headers(**values: str) -> list[tuple[str, bytes]]:
    """Kafka headers from keyword values (UTF-8)."""
    return [(name, value.encode()) for name, value in values.items()]
