"""The event-type registry: everything the pipeline knows about each vendor event, in one row.

An event type's name, its webhook route, its raw and clean topics, the
payload field that identifies its entity (key of both topics, dedupe's
entity), its payload models, the vendor's documented sample, whether it can
carry patient data and the Postgres table of its entities' state. The ingress
routes, topic lists, envelope entity ids, samples, JSON Schemas, metric
labels, the Postgres writer's rows and sealing, the patient-data sweeps and
the console all read this table; ``docs/adding-an-event-type.md`` walks through
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
    # Whether its payload can hold a patient's name or email: its raw and clean topics
    # are then listed where a forget says which copies remain (spakinect_pipeline.phi).
    carries_phi: bool
    # The Postgres table holding each entity's newest applied state (rows built by
    # sinks.postgres.rows), or None: its events are recorded in spakinect_events only.
    state_table: str | None = None

    @property
    def schema_name(self) -> str:
        """The JSON Schema's file name (``docs/schemas/<name>.schema.json``)."""
        return self.raw_topic


EVENT_TYPES: dict[str, EventType] = {}
_BY_ROUTE: dict[str, EventType] = {}  # read per request: a lookup, not a scan


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
    _BY_ROUTE[event_type.route] = event_type
    return event_type


def unregister(name: str) -> None:
    """Remove an event type (tests that register a made-up one)."""
    del _BY_ROUTE[EVENT_TYPES.pop(name).route]


def by_route(route: str) -> EventType:
    """The event type a webhook path receives."""
    return _BY_ROUTE[route]


def state_table(event: str) -> str | None:
    """The state table of an event type (None for one without, or one not registered)."""
    event_type = EVENT_TYPES.get(event)
    return None if event_type is None else event_type.state_table


def phi_events() -> list[str]:
    """The names of the event types whose payload can hold a patient's name or email."""
    return [t.name for t in EVENT_TYPES.values() if t.carries_phi]


def keyed_by(entity_field: str) -> list[str]:
    """The names of the event types whose entity is the ``data`` field ``entity_field``."""
    return [t.name for t in EVENT_TYPES.values() if t.entity_field == entity_field]


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
        carries_phi=True,  # patient_details: name, email
        state_table="gfe_visits",
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
        carries_phi=False,  # the vendor's catalogue: no patient
        state_table="treatments",
    )
)
