"""docs/adding-an-event-type.md, followed: a made-up event type registered in three places
(payload models, sample, registry row) goes from its webhook to its clean topic and rows.

Everything runs in unit scope: the ingress with the in-memory publisher, the
dedupe stage's handler on a memory-store table, the Postgres sink's row builder.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pytest
from fastapi.testclient import TestClient

from events.envelope import Disposition, Record, decode_envelope
from events.messages import SourceMessage
from events.payloads import NonEmptyStr, OpenModel, Timestamped
from events.registry import EVENT_TYPES, EventType, by_route, register, unregister
from events.schemas import schemas
from events.topics import Topics
from ingress.app import create_app
from ingress.settings import IngressSettings
from sinks.email.render import wants_email
from sinks.postgres.rows import batch_rows
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.phi.copies import patient_topics
from streams.dedupe import DedupeHandler
from streams.dlq import DeadLetters
from streams.handler import Tools, process
from tests.helpers import RecordingPublisher, memory_table

BOOKED = "appointment.booked"


class AppointmentDataHead(OpenModel):
    appointment_id: NonEmptyStr


class AppointmentData(AppointmentDataHead):
    location_id: str
    starts_at: str


class AppointmentBookedHead(Timestamped):
    event: Literal["appointment.booked"]
    data: AppointmentDataHead


class AppointmentBooked(AppointmentBookedHead):
    """An appointment was booked."""

    data: AppointmentData


SAMPLE: dict[str, Any] = {
    "event": BOOKED,
    "timestamp": 1714675200000,
    "success": True,
    "data": {"appointment_id": "appt_1", "location_id": "loc_1", "starts_at": "2026-12-01T09:00"},
}


@pytest.fixture
def booked() -> Iterator[EventType]:
    event_type = register(
        EventType(
            name=BOOKED,
            route="/webhooks/appointment-booked",
            raw_topic="appointment-booked",
            clean_topic="appointments",
            entity_field="appointment_id",
            head=AppointmentBookedHead,
            full=AppointmentBooked,
            sample=SAMPLE,
            carries_phi=True,  # as if it named the patient: its topics become patient topics
        )
    )
    yield event_type
    unregister(BOOKED)


def test_a_registered_event_type_goes_from_its_webhook_to_its_clean_topic(
    booked: EventType, tmp_path: Path
) -> None:
    topics = Topics()
    assert "spakinect.appointment-booked" in topics.all()
    assert "spakinect.appointments" in topics.all()
    assert {"spakinect.appointment-booked", "spakinect.appointments"} <= set(patient_topics(topics))
    assert schemas()["appointment-booked"]["title"] == "AppointmentBooked"

    publisher = RecordingPublisher()
    app = create_app(IngressSettings(allow_unauthenticated=True), KafkaSettings(), publisher)
    with TestClient(app) as client:
        answer = client.post(booked.route, json=SAMPLE)
        again = client.post("/webhooks", json=SAMPLE)  # routed by its "event" field
        refused = client.post(booked.route, json={**SAMPLE, "data": {"location_id": "x"}})
        metrics = client.get("/metrics").text
        openapi = client.get("/openapi.json").json()
    assert answer.status_code == again.status_code == 200
    assert answer.json()["event_id"] == "appointment.booked:appt_1:1714675200000"
    assert refused.status_code == 422
    assert 'event="appointment.booked"' in metrics
    assert booked.route in openapi["paths"]

    raw = [m for m in publisher.messages if m[0] == "spakinect.appointment-booked"]
    assert [(topic, key) for topic, key, *_ in raw] == [
        ("spakinect.appointment-booked", b"appt_1")
    ] * 2
    sources = [
        SourceMessage(topic, 0, offset, key, value, headers)
        for offset, (topic, key, value, headers) in enumerate(raw)
    ]

    stage_out = RecordingPublisher()
    tools = Tools("dedupe", stage_out, DeadLetters(stage_out, topics.dlq, "dedupe"))
    handler = DedupeHandler(memory_table(tmp_path), topics, window_s=3600)
    asyncio.run(process(handler, sources, tools))
    (clean,) = [m for m in stage_out.messages if m[0] != handler.entities.topic]  # retry: duplicate
    topic, key, value, _ = clean
    assert (topic, key) == ("spakinect.appointments", b"appt_1")
    envelope = decode_envelope(value)
    assert envelope.disposition is Disposition.APPLY
    assert envelope.entity_id == "appt_1"

    record = Record(envelope, SourceMessage(topic, 0, 0, key, value, []))
    rows = batch_rows([record])
    assert [row[:3] for row in rows.events] == [(envelope.event_id, BOOKED, "appt_1")]
    assert rows.visits == rows.treatments == []
    assert not wants_email(envelope)


def test_an_event_type_cannot_take_a_route_or_topic_already_taken(booked: EventType) -> None:
    moved = dataclasses.replace(booked, name="appointment.moved", raw_topic="appointment-moved")
    with pytest.raises(ValueError, match="reuses"):
        register(dataclasses.replace(moved, clean_topic="moves"))  # booked's route
    with pytest.raises(ValueError, match="reuses"):
        register(dataclasses.replace(moved, route="/webhooks/appointment-moved"))  # its topic
    assert "appointment.moved" not in EVENT_TYPES


def test_an_unregistered_event_type_leaves_no_route_behind(booked: EventType) -> None:
    assert by_route(booked.route) is booked
    unregister(BOOKED)
    with pytest.raises(KeyError):
        by_route(booked.route)
    register(booked)  # for the fixture's own unregister


ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("events", "ingress", "streams", "sinks", "spakinect_pipeline", "cli", "console")
# Where an event type may be spelled out: its payload model, its sample, its registry row,
# and applied migrations (SQL already run cannot change).
SPELLED = {"events/payloads.py", "events/samples.py", "events/registry.py"}


def test_no_product_file_but_the_registry_names_an_event_type() -> None:
    names = {name for t in EVENT_TYPES.values() for name in (t.name, t.raw_topic)}
    offenders = []
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*")):
            relative = path.relative_to(ROOT).as_posix()
            if path.suffix not in (".py", ".html", ".sql") or "migrations/" in relative:
                continue
            if relative in SPELLED:
                continue
            text = path.read_text()
            offenders += [f"{relative}: {name}" for name in sorted(names) if name in text]
    assert offenders == []
