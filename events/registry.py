"""The event-type registry: everything the pipeline knows about each vendor event, in one row.

An event type's name, its webhook route, its raw and clean topics, the
payload field that identifies its entity (key of both topics, dedupe's
entity), its payload models and the vendor's documented sample. The ingress
routes, topic lists, envelope entity ids, samples, JSON Schemas and metric
labels all read this table; ``docs/adding-an-event-type.md`` walks through
adding a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from events.payloads import (
    Timestamped,
    TreatmentUpdated,
    TreatmentUpdatedHead,
    VisitCompleted,
    VisitCompletedHead,
)
from events.samples import SAMPLES

VISIT_COMPLETED = "visit.completed"
TREATMENT_UPDATED = "treatment.updated"


@dataclass(frozen=True, slots=True)
class EventType:
    """One vendor event type, and how the pipeline routes, validates and keys it."""

    name: str  # the payload's ``event`` field
    route: str  # the ingress's webhook path
    raw_topic: str  # raw topic, without KAFKA_TOPIC_PREFIX: every delivery, duplicates included
    clean_topic: str  # clean topic, without the prefix: each distinct event once
    entity_field: str  # the ``data`` field naming the entity; the key of both topics
    head: type[Timestamped]  # what even an unsuccessful event must carry
    full: type[Timestamped]  # what a successful event must carry
    sample: dict[str, Any]  # the vendor's documented example

    @property
    def schema_name(self) -> str:
        """The JSON Schema's file name (``docs/schemas/<name>.schema.json``)."""
        return self.raw_topic


EVENT_TYPES: dict[str, EventType] = {}


def register(event_type: EventType) -> EventType:
    """Add an event type; its name, route and topics must be new."""
    taken = {
        value
        for known in EVENT_TYPES.values()
        for value in (known.name, known.route, known.raw_topic, known.clean_topic)
    }
    clashes = {event_type.name, event_type.route, event_type.raw_topic, event_type.clean_topic}
    if clashes & taken:
        raise ValueError(f"event type {event_type.name!r} reuses {sorted(clashes & taken)}")
    EVENT_TYPES[event_type.name] = event_type
    return event_type


def by_route(route: str) -> EventType:
    """The event type a webhook path receives."""
    return next(t for t in EVENT_TYPES.values() if t.route == route)


register(
    EventType(
        name=VISIT_COMPLETED,
        route="/webhooks/visit-completed",
        raw_topic="visit-completed",
        clean_topic="visits",
        entity_field="gfe_id",
        head=VisitCompletedHead,
        full=VisitCompleted,
        sample=SAMPLES[VISIT_COMPLETED],
    )
)
register(
    EventType(
        name=TREATMENT_UPDATED,
        route="/webhooks/treatment-updated",
        raw_topic="treatment-updated",
        clean_topic="treatments",
        entity_field="treatment_id",
        head=TreatmentUpdatedHead,
        full=TreatmentUpdated,
        sample=SAMPLES[TREATMENT_UPDATED],
    )
)
