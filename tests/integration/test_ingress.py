"""The ingress app against a real Kafka: what it writes where, and what it answers when it can't."""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from fastapi import FastAPI

from devstack.process import free_port
from events.registry import VISIT_COMPLETED
from events.samples import SAMPLES
from events.topics import Topics
from ingress.app import create_app
from ingress.settings import IngressSettings
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.topic_admin import ensure_topics
from tests.helpers import read_topic, wait_until
from tests.services import Services

pytestmark = pytest.mark.integration
JSON = {"Content-Type": "application/json"}


@contextlib.asynccontextmanager
async def client_for(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:
            yield client


@pytest.fixture(scope="module")
async def kafka(services: Services) -> KafkaSettings:
    settings = KafkaSettings(
        bootstrap_servers=[services.kafka_bootstrap],
        topic_prefix=f"i{uuid.uuid4().hex[:8]}.",
        partitions=2,
    )
    await ensure_topics(settings)
    return settings


@pytest.fixture
async def client(kafka: KafkaSettings) -> AsyncIterator[httpx.AsyncClient]:
    settings = IngressSettings(allow_unauthenticated=True, publish_timeout_s=3)
    async with client_for(create_app(settings, kafka)) as c:
        yield c


async def test_accepted_event_is_on_its_raw_topic_keyed_by_entity(
    client: httpx.AsyncClient, kafka: KafkaSettings
) -> None:
    gfe_id = f"gfe_{uuid.uuid4().hex[:8]}"
    body = orjson.loads(orjson.dumps(SAMPLES["visit.completed"]))
    body["data"]["gfe_id"] = gfe_id
    body["timestamp"] = "1714675200000"  # lax: a numeric string is a timestamp
    response = await client.post("/webhooks", content=orjson.dumps(body), headers=JSON)
    assert response.status_code == 200
    event_id = f"visit.completed:{gfe_id}:1714675200000"
    assert response.json() == {"received": True, "event_id": event_id}

    topic = Topics(kafka.topic_prefix).raw(VISIT_COMPLETED)
    (message,) = [
        m for m in await read_topic(kafka.bootstrap_servers[0], topic) if m.key == gfe_id.encode()
    ]
    assert dict(message.headers) == {"event": b"visit.completed", "event_id": event_id.encode()}
    envelope = orjson.loads(message.value)
    assert envelope["envelope_version"] == 1
    assert envelope["event_id"] == event_id
    assert "disposition" not in envelope
    assert envelope["payload"]["timestamp"] == 1714675200000
    assert envelope["received_at"].endswith("Z")


async def test_unknown_event_is_kept_on_the_unrouted_topic(
    client: httpx.AsyncClient, kafka: KafkaSettings
) -> None:
    marker = uuid.uuid4().hex
    response = await client.post(
        "/webhooks", headers=JSON, json={"event": "visit.cancelled", "marker": marker}
    )
    assert response.status_code == 200
    assert response.json()["routed"] is False
    messages = await read_topic(kafka.bootstrap_servers[0], Topics(kafka.topic_prefix).unrouted)
    kept = [m for m in messages if marker.encode() in m.value]
    assert len(kept) == 1
    assert kept[0].key == b"visit.cancelled"


@pytest.mark.parametrize(
    ("body", "status", "reason"),
    [
        (b"{not json MARK", 400, "invalid_json"),
        (
            b'{"event": "visit.completed", "timestamp": 1714675200000, "success": true, '
            b'"data": {"gfe_id": "MARK", "patient_details": {"name": "Canary Patient"}}}',
            422,
            "schema",
        ),
        (b'{"event": "treatment.updated", "m": "MARK"}', 400, "wrong_event"),
    ],
)
async def test_refused_bodies_are_kept_on_the_rejected_topic_with_the_reason(
    client: httpx.AsyncClient, kafka: KafkaSettings, body: bytes, status: int, reason: str
) -> None:
    marker = uuid.uuid4().hex.encode()
    payload = body.replace(b"MARK", marker)
    response = await client.post("/webhooks/visit-completed", content=payload, headers=JSON)
    assert response.status_code == status
    assert response.json()["error"] == reason
    assert "Canary" not in response.text
    if status == 422:
        assert {f["field"] for f in response.json()["fields"]} >= {
            "data.location_id",
            "data.patient_details.email",
        }
    rejected = await read_topic(kafka.bootstrap_servers[0], Topics(kafka.topic_prefix).rejected)
    (kept,) = [m for m in rejected if marker in m.value]
    assert kept.value == payload
    assert dict(kept.headers)["reason"] == reason.encode()


async def test_wrong_content_type_and_oversized_bodies(client: httpx.AsyncClient) -> None:
    sample = orjson.dumps(SAMPLES["visit.completed"])
    response = await client.post(
        "/webhooks/visit-completed", content=sample, headers={"Content-Type": "text/plain"}
    )
    assert response.status_code == 415
    response = await client.post(
        "/webhooks/visit-completed",
        headers={"Content-Type": "application/json; charset=utf-8"},
        content=sample,
    )
    assert response.status_code == 200

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(300):
            yield b" " * 1024

    response = await client.post("/webhooks/visit-completed", content=chunks(), headers=JSON)
    assert response.status_code == 413


async def test_readyz_is_200_with_kafka(client: httpx.AsyncClient) -> None:
    async def ready() -> bool:
        return (await client.get("/readyz")).status_code == 200

    await wait_until(ready, 15, "/readyz 200")
    assert (await client.get("/healthz")).json() == {"status": "ok"}


async def test_kafka_unreachable_answers_503_with_retry_after_within_the_budget() -> None:
    dead = KafkaSettings(bootstrap_servers=[f"127.0.0.1:{free_port()}"])
    settings = IngressSettings(allow_unauthenticated=True, publish_timeout_s=2, retry_after_s=7)
    async with client_for(create_app(settings, dead)) as client:
        for _ in range(3):
            started = time.monotonic()
            response = await client.post(
                "/webhooks/visit-completed",
                headers=JSON,
                content=orjson.dumps(SAMPLES["visit.completed"]),
            )
            assert time.monotonic() - started < settings.publish_timeout_s + 1
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "7"
        assert (await client.get("/readyz")).status_code == 503


async def test_kafka_not_acking_in_time_answers_503_within_the_budget(
    kafka: KafkaSettings,
) -> None:
    """Kafka is up but never acks (the raw topic is missing): the budget still holds."""
    missing = kafka.model_copy(update={"topic_prefix": f"missing{uuid.uuid4().hex[:6]}."})
    settings = IngressSettings(allow_unauthenticated=True, publish_timeout_s=1.5)
    async with client_for(create_app(settings, missing)) as client:
        started = time.monotonic()
        response = await client.post(
            "/webhooks/visit-completed",
            headers=JSON,
            content=orjson.dumps(SAMPLES["visit.completed"]),
        )
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert 1.0 <= elapsed < settings.publish_timeout_s + 1


async def test_rejected_replay_publishes_what_the_models_now_accept(
    client: httpx.AsyncClient, kafka: KafkaSettings
) -> None:
    """A body refused for a reason the models no longer have is recovered by the replay."""
    from ingress.replay_rejected import replay_rejected

    gfe_id = f"gfe_{uuid.uuid4().hex[:8]}"
    body = orjson.loads(orjson.dumps(SAMPLES["visit.completed"]))
    body["data"]["gfe_id"] = gfe_id
    # Sent to the wrong URL: refused (400, wrong_event) and kept on the rejected topic.
    response = await client.post("/webhooks/treatment-updated", json=body)
    assert response.status_code == 400
    still_bad = await client.post("/webhooks", content=b"{not json", headers=JSON)
    assert still_bad.status_code == 400

    dry = await replay_rejected(kafka, dry_run=True, idle_s=1)
    assert dry["published"] >= 1
    assert dry["still_refused:invalid_json"] >= 1
    counts = await replay_rejected(kafka, idle_s=1)
    assert counts["published"] == dry["published"]
    raw = await read_topic(
        kafka.bootstrap_servers[0], Topics(kafka.topic_prefix).raw(VISIT_COMPLETED)
    )
    (message,) = [m for m in raw if m.key == gfe_id.encode()]
    assert orjson.loads(message.value)["event_id"] == f"visit.completed:{gfe_id}:1714675200000"
