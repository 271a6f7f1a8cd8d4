"""One vendor delivery is one trace, across the real stack.

The ingress and one worker per stage run as their own processes on real
Kafka, Postgres and SMTP, with tracing turned on the way an operator does
(``OTEL_EXPORTER_OTLP_ENDPOINT``); their OTLP exporters send to a receiver
in this process (:mod:`tests.otlp_receiver`), standing in for a collector.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from events.registry import VISIT_COMPLETED
from events.samples import SAMPLES
from events.samples import sample_visit as visit
from ingress.replay_rejected import replay_rejected
from spakinect_pipeline.config import KafkaSettings
from tests.helpers import wait_until
from tests.otlp_receiver import OtlpReceiver, ReceivedSpan

from .conftest import Pipeline

pytestmark = pytest.mark.integration

# Filled in by the receiver fixture before the module's pipeline starts (it reads this).
PIPELINE_ENV: dict[str, str] = {}
SERVICES = {"spakinect-ingress", "spakinect-dedupe", "spakinect-postgres", "spakinect-email"}
PATIENT = SAMPLES["visit.completed"]["data"]["patient_details"]


@pytest.fixture(scope="module", autouse=True)
async def receiver() -> AsyncIterator[OtlpReceiver]:
    receiver = OtlpReceiver()
    url = await receiver.start()
    # Export within 100 ms of a span ending, instead of the SDK's default 5 s.
    PIPELINE_ENV.update(OTEL_EXPORTER_OTLP_ENDPOINT=url, OTEL_BSP_SCHEDULE_DELAY="100")
    try:
        yield receiver
    finally:
        await receiver.stop()


def only(spans: list[ReceivedSpan], service: str) -> ReceivedSpan:
    (span,) = [s for s in spans if s.service == service]
    return span


async def delivery_trace(
    receiver: OtlpReceiver, event_id: str, services: set[str], known: frozenset[str] = frozenset()
) -> str:
    """The trace of a delivery of ``event_id`` not in ``known``, once ``services`` are in it."""

    async def complete() -> str | None:
        for root in receiver.with_attribute("spakinect.event_id", event_id):
            if not root.parent_id and root.trace_id not in known:
                seen = {s.service for s in receiver.trace(root.trace_id)}
                if services <= seen:
                    return root.trace_id
        return None

    trace_id: str = await wait_until(complete, 60, f"spans of {sorted(services)} for {event_id}")
    return trace_id


async def post_visit(pipeline: Pipeline, gfe_id: str) -> str:
    """Post a visit the way the vendor does; its event id."""
    assert (await pipeline.post(visit(gfe_id))).status_code == 200
    return f"visit.completed:{gfe_id}:1714675200000"


async def test_one_posted_event_is_one_trace_through_every_stage(
    pipeline: Pipeline, receiver: OtlpReceiver
) -> None:
    event_id = await post_visit(pipeline, f"gfe_trace_{uuid.uuid4().hex[:6]}")
    trace_id = await delivery_trace(receiver, event_id, SERVICES)
    spans = receiver.trace(trace_id)
    ingress = only(spans, "spakinect-ingress")
    dedupe = only(spans, "spakinect-dedupe")
    postgres = only(spans, "spakinect-postgres")
    email = only(spans, "spakinect-email")
    assert len(spans) == 4
    assert (ingress.name, ingress.parent_id) == ("POST /webhooks/visit-completed", "")
    assert ingress.attributes["http.response.status_code"] == 200
    assert dedupe.parent_id == ingress.span_id
    assert postgres.parent_id == dedupe.span_id
    assert email.parent_id == dedupe.span_id
    assert [s.name for s in (dedupe, postgres, email)] == [
        "dedupe visit.completed",
        "postgres visit.completed",
        "email visit.completed",
    ]
    assert dedupe.attributes["spakinect.outcome"] == "published"
    assert dedupe.attributes["spakinect.disposition"] == "apply"
    assert dedupe.attributes["messaging.destination.name"] == pipeline.topics.raw(VISIT_COMPLETED)
    assert postgres.attributes["spakinect.outcome"] == "written"
    assert postgres.attributes["messaging.destination.name"] == pipeline.topics.clean(
        VISIT_COMPLETED
    )
    assert email.attributes["spakinect.outcome"] == "sent"
    # Every span naming this event is in this one trace.
    assert {s.trace_id for s in receiver.with_attribute("spakinect.event_id", event_id)} == {
        trace_id
    }

    # The batches the stages handled it in: spans of their own, linked both ways.
    for stage_span in (dedupe, postgres):
        ((batch_trace, batch_id),) = stage_span.links
        (batch,) = [s for s in receiver.trace(batch_trace) if s.span_id == batch_id]
        assert batch.name == f"{stage_span.attributes['spakinect.stage']} batch"
        assert batch.service == stage_span.service
        assert batch.trace_id != trace_id
        assert (trace_id, stage_span.span_id) in batch.links
        assert batch.attributes["messaging.batch.message_count"] >= 1


async def test_a_repeated_delivery_is_a_trace_of_its_own_ending_at_dedupe(
    pipeline: Pipeline, receiver: OtlpReceiver
) -> None:
    gfe_id = f"gfe_trace_dup_{uuid.uuid4().hex[:6]}"
    event_id = await post_visit(pipeline, gfe_id)
    first = await delivery_trace(receiver, event_id, SERVICES)

    await post_visit(pipeline, gfe_id)
    again = await delivery_trace(
        receiver, event_id, {"spakinect-ingress", "spakinect-dedupe"}, frozenset({first})
    )
    await asyncio.sleep(2)  # a sink span would have arrived by now
    spans = receiver.trace(again)
    assert {s.service for s in spans} == {"spakinect-ingress", "spakinect-dedupe"}
    assert only(spans, "spakinect-dedupe").attributes["spakinect.outcome"] == "duplicate"


async def test_a_replayed_refused_body_continues_the_trace_of_its_delivery(
    pipeline: Pipeline, receiver: OtlpReceiver
) -> None:
    gfe_id = f"gfe_trace_refused_{uuid.uuid4().hex[:6]}"
    response = await pipeline.post(visit(gfe_id), route="/webhooks/treatment-updated")
    assert response.status_code == 400  # wrong endpoint: kept on the rejected topic

    async def refused() -> list[ReceivedSpan]:
        return receiver.with_attribute("spakinect.refused_reason", "wrong_event")

    (request,) = await wait_until(refused, 30, "the refused request's span")
    kafka = KafkaSettings(
        bootstrap_servers=[pipeline.services.kafka_bootstrap], topic_prefix=pipeline.topics.prefix
    )
    assert (await replay_rejected(kafka, idle_s=1))["published"] == 1

    async def continued() -> list[ReceivedSpan] | None:
        spans = receiver.trace(request.trace_id)
        return spans if {s.service for s in spans} == SERVICES else None

    spans = await wait_until(continued, 60, "the replayed event's spans in the refused trace")
    assert only(spans, "spakinect-dedupe").parent_id == request.span_id
    assert only(spans, "spakinect-postgres").attributes["spakinect.outcome"] == "written"


async def test_no_span_carries_patient_data(pipeline: Pipeline, receiver: OtlpReceiver) -> None:
    assert (await pipeline.post(SAMPLES["visit.completed"])).status_code == 200
    await delivery_trace(receiver, "visit.completed:gfe_abc123xyz789:1714675200000", SERVICES)
    assert len({s.service for s in receiver.spans}) == 4
    text = repr([(s.name, s.attributes) for s in receiver.spans])
    for value in (PATIENT["name"], PATIENT["first_name"], PATIENT["last_name"], PATIENT["email"]):
        assert value not in text
    assert not [s for s in receiver.spans if s.error]
