"""``PHI_KAFKA_SEAL=on`` through the real ingress and a real broker: what lands on every topic
the ingress writes holds no patient name or email, opens with the key store, and stops
opening once its key is destroyed (docs/patient-data-on-kafka.md)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import orjson
import pytest
from pydantic import SecretStr

from events.registry import VISIT_COMPLETED
from events.samples import SAMPLES
from events.topics import Topics
from ingress.app import create_app
from ingress.intake import Refused
from ingress.replay_rejected import replay_rejected
from ingress.settings import IngressSettings
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.phi.crypto import new_key_entry
from spakinect_pipeline.phi.kafka_client import SealedFields
from spakinect_pipeline.phi.kafka_keys import field_ref
from spakinect_pipeline.phi.key_janitor import sweep_epoch_keys
from spakinect_pipeline.phi.key_store import destroy, ensure_key_topic, key_topic
from spakinect_pipeline.phi.settings import PhiSettings
from spakinect_pipeline.phi.unparsed import SEALED_HEADER, epoch_subject
from spakinect_pipeline.publisher import KafkaPublisher, PublishFailed
from spakinect_pipeline.topic_admin import ensure_topics
from tests.helpers import read_topic, wait_until
from tests.services import Services

from .test_ingress import JSON, client_for

pytestmark = pytest.mark.integration
PHI = PhiSettings(
    kafka_seal=True,
    kafka_master_keys=SecretStr(new_key_entry("m1")),
    index_key=SecretStr(new_key_entry().split(":", 1)[1]),
    extra_paths="data.notes",
)
SETTINGS = IngressSettings(allow_unauthenticated=True, publish_timeout_s=8)  # a loaded box


@pytest.fixture(scope="module")
async def kafka(services: Services) -> KafkaSettings:
    return await topics_of_its_own(KafkaSettings(bootstrap_servers=[services.kafka_bootstrap]))


@pytest.fixture
async def client(kafka: KafkaSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(SETTINGS, kafka, phi=PHI)) as c:
        yield c


async def topics_of_its_own(kafka: KafkaSettings) -> KafkaSettings:
    """The same broker, a fresh prefix: a test that reads whole topics sees only its own."""
    own = kafka.model_copy(update={"topic_prefix": f"t{uuid.uuid4().hex[:8]}."})
    await ensure_topics(own)
    await ensure_key_topic(own)
    return own


def visit(gfe_id: str, email: str) -> dict[str, object]:
    body = orjson.loads(orjson.dumps(SAMPLES[VISIT_COMPLETED]))
    body["data"]["gfe_id"] = gfe_id
    body["data"]["patient_details"].update(name="Canary Patient", email=email)
    body["data"]["notes"] = "Canary rang"
    return body  # type: ignore[no-any-return]


async def messages(kafka: KafkaSettings, topic: str) -> list[Any]:
    return await read_topic(kafka.bootstrap_servers[0], topic)


def whole(message: Any) -> bytes:
    """Everything a subscriber receives of a message: key, value, headers."""
    headers = b"".join(name.encode() + value for name, value in message.headers)
    return bytes(message.key or b"") + bytes(message.value or b"") + headers


async def test_a_visit_lands_on_its_raw_topic_sealed_and_opens_with_the_key_store(
    client: httpx.AsyncClient, kafka: KafkaSettings
) -> None:
    gfe_id, email = f"gfe_{uuid.uuid4().hex[:8]}", f"canary.{uuid.uuid4().hex[:6]}@example.com"
    response = await client.post("/webhooks/visit-completed", json=visit(gfe_id, email))
    assert response.status_code == 200
    topic = Topics(kafka.topic_prefix).raw(VISIT_COMPLETED)
    (message,) = [m for m in await messages(kafka, topic) if m.key == gfe_id.encode()]
    for needle in (b"Canary", email.encode(), b"canary."):
        assert needle not in whole(message)
    envelope = orjson.loads(message.value)
    assert envelope["envelope_version"] == 2
    assert envelope["sealed"] == ["data.patient_details", "data.notes"]
    assert envelope["payload"]["data"]["gfe_id"] == gfe_id  # the rest stays plain
    assert envelope["event_id"] == response.json()["event_id"]
    records = await messages(kafka, key_topic(kafka.topic_prefix))
    assert records
    assert all(b"@" not in whole(r) and b"Canary" not in whole(r) for r in records)

    helper = SealedFields(kafka, PHI.kafka_master())
    await helper.refresh()
    opened = helper.open(envelope)
    assert opened["forgotten"] is False
    assert opened["payload"]["data"]["patient_details"]["email"] == email
    assert opened["payload"]["data"]["notes"] == "Canary rang"


async def test_a_destroyed_key_is_evicted_by_the_follower(kafka: KafkaSettings) -> None:
    """A forget's tombstone reaches the ingress: its next visit is sealed with a new key."""
    app = create_app(SETTINGS, kafka, phi=PHI)
    app.state.ctx.sealer.stale_s = 3600  # so only the tombstone, not the staleness bound, rekeys
    async with client_for(app) as client:
        await _rekeyed_after_a_forget(client, kafka)


async def _rekeyed_after_a_forget(client: httpx.AsyncClient, kafka: KafkaSettings) -> None:
    email = f"forget.{uuid.uuid4().hex[:6]}@example.com"
    topic = Topics(kafka.topic_prefix).raw(VISIT_COMPLETED)

    async def key_of_a_new_visit() -> tuple[str, str]:
        gfe_id = f"gfe_{uuid.uuid4().hex[:8]}"
        assert (await client.post("/webhooks", json=visit(gfe_id, email))).status_code == 200
        (message,) = [m for m in await messages(kafka, topic) if m.key == gfe_id.encode()]
        token = orjson.loads(message.value)["payload"]["data"]["patient_details"]
        ref = field_ref(token)
        assert ref is not None
        return ref

    first = await key_of_a_new_visit()
    assert await key_of_a_new_visit() == first  # cached: one key per patient and process
    destroyed = await destroy(kafka, [first[0]])
    assert f"k1:{first[0]}:{first[1]}" in destroyed

    async def rekeyed() -> bool:
        return await key_of_a_new_visit() != first

    await wait_until(rekeyed, 15, "a new key after the tombstone", interval=1)


async def test_refused_and_unrouted_bodies_are_sealed_whole_and_replay_still_opens_them(
    client: httpx.AsyncClient, kafka: KafkaSettings
) -> None:
    topics = Topics(kafka.topic_prefix)
    gfe_id, email = f"gfe_{uuid.uuid4().hex[:8]}", f"refused.{uuid.uuid4().hex[:6]}@example.com"
    # Sent to the wrong URL: refused (wrong_event), today's models accept it on a replay.
    refused = await client.post("/webhooks/treatment-updated", json=visit(gfe_id, email))
    assert refused.status_code == 400
    assert "Canary" not in refused.text
    marker = uuid.uuid4().hex
    unknown = {"event": "visit.cancelled", "marker": marker, "email": email}
    unrouted = await client.post("/webhooks", json=unknown)
    assert unrouted.json()["routed"] is False
    retried = await client.post("/webhooks", json=unknown)  # the vendor's retry: same id
    assert retried.json()["event_id"] == unrouted.json()["event_id"]

    kept_now = [*await messages(kafka, topics.rejected), *await messages(kafka, topics.unrouted)]
    on_topics = b"".join(whole(m) for m in kept_now)
    for needle in (b"Canary", email.encode(), marker.encode(), gfe_id.encode()):
        assert needle not in on_topics
    kept = [
        m
        for m in await messages(kafka, topics.unrouted)
        if orjson.loads(m.value)["event_id"] == unrouted.json()["event_id"]
    ]
    envelope = orjson.loads(kept[0].value)
    assert envelope["envelope_version"] == 2
    assert envelope["sealed"] == ["sealed"]
    assert list(envelope["payload"]) == ["sealed"]
    ref = field_ref(envelope["payload"]["sealed"])
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    assert ref is not None
    assert ref[0] in {epoch_subject(datetime.now(UTC)), epoch_subject(hour_ago)}
    helper = SealedFields(kafka, PHI.kafka_master())
    await helper.refresh()
    assert helper.open(envelope)["payload"]["sealed"] == unknown

    rejected = await messages(kafka, topics.rejected)
    assert all(SEALED_HEADER in dict(m.headers) for m in rejected)
    counts = await replay_rejected(kafka, idle_s=1, phi=PHI)
    assert counts["published"] >= 1
    raw = await messages(kafka, topics.raw(VISIT_COMPLETED))
    (replayed,) = [m for m in raw if m.key == gfe_id.encode()]
    assert b"Canary" not in whole(replayed)  # replayed as the ingress would: sealed
    assert helper.open(orjson.loads(replayed.value))["payload"]["data"]["notes"] is None
    await helper.refresh()  # the replay minted the patient's key after the helper's read
    opened = helper.open(orjson.loads(replayed.value))
    assert opened["payload"]["data"]["patient_details"]["email"] == email


async def test_the_janitor_destroys_an_old_epoch_key_and_its_refused_body_no_longer_opens(
    kafka: KafkaSettings,
) -> None:
    from ingress.sealing import Sealer

    prefix = await topics_of_its_own(kafka)
    publisher = KafkaPublisher(prefix, client_id="test-janitor")

    async def send(topic: str, value: bytes, key: bytes) -> None:
        await publisher.publish(topic, value, key=key, timeout=10)

    sealer = Sealer(prefix, PHI.kafka_master(), (), send, stale_s=None)
    topics = Topics(prefix.topic_prefix)
    refused = Refused(400, "invalid_json", "not JSON")
    now = datetime.now(UTC)
    try:
        for received_at in (now - timedelta(days=9), now):  # an old body and a fresh one
            body = b'{"name": "Canary Patient" ' + received_at.isoformat().encode()
            kept = await sealer.rejected(refused, body, "/webhooks", topics, received_at)
            await publisher.publish(
                kept.topic, kept.value, key=None, headers=kept.headers, timeout=10
            )
    finally:
        await publisher.stop()
    assert (await replay_rejected(prefix, dry_run=True, idle_s=1, phi=PHI))[
        "still_refused:invalid_json"
    ] == 2

    destroyed = await sweep_epoch_keys(prefix, PHI.unparsed_key_ttl, now)
    assert destroyed == [f"k1:{epoch_subject(now - timedelta(days=9))}:" + destroyed[0][-16:]]
    assert await sweep_epoch_keys(prefix, PHI.unparsed_key_ttl, now) == []  # idempotent
    counts = await replay_rejected(prefix, dry_run=True, idle_s=1, phi=PHI)
    assert counts["unreadable"] == 1
    assert counts["still_refused:invalid_json"] == 1


class KeyTopicDown(KafkaPublisher):
    """The broker refuses the key topic (as if down when a key is minted); all else works."""

    async def publish(self, topic: str, *args: Any, **kwargs: Any) -> None:
        if topic.endswith("phi-keys"):
            raise PublishFailed("no ack from Kafka within 3s")
        await super().publish(topic, *args, **kwargs)


async def test_no_key_stored_means_503_and_nothing_published(kafka: KafkaSettings) -> None:
    gfe_id = f"gfe_{uuid.uuid4().hex[:8]}"
    publisher = KeyTopicDown(kafka, client_id="test-key-topic-down")
    app = create_app(SETTINGS, kafka, publisher=publisher, phi=PHI)
    async with client_for(app) as client:
        response = await client.post("/webhooks", json=visit(gfe_id, "down@example.com"))
        refused = await client.post("/webhooks", content=b"{not json", headers=JSON)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == str(SETTINGS.retry_after_s)
    assert refused.status_code == 503  # not a 400 the vendor would give up on
    raw = await messages(kafka, Topics(kafka.topic_prefix).raw(VISIT_COMPLETED))
    assert [m for m in raw if m.key == gfe_id.encode()] == []


async def test_sealing_off_publishes_version_1_as_before_and_mints_no_key(
    kafka: KafkaSettings,
) -> None:
    off = await topics_of_its_own(kafka)
    gfe_id = f"gfe_{uuid.uuid4().hex[:8]}"
    body = visit(gfe_id, "plain@example.com")
    no_master = PhiSettings(kafka_seal=False)  # and no master key: none is needed
    async with client_for(create_app(SETTINGS, off, phi=no_master)) as client:
        assert (await client.post("/webhooks", json=body)).status_code == 200
        assert (await client.post("/webhooks", content=b"{bad", headers=JSON)).status_code == 400
    (message,) = await messages(off, Topics(off.topic_prefix).raw(VISIT_COMPLETED))
    envelope = orjson.loads(message.value)
    assert envelope["envelope_version"] == 1
    assert "sealed" not in envelope
    assert envelope["payload"] == orjson.loads(orjson.dumps(body)) | {"timestamp": 1714675200000}
    (kept,) = await messages(off, Topics(off.topic_prefix).rejected)
    assert kept.value == b"{bad"
    assert SEALED_HEADER not in dict(kept.headers)
    assert await messages(off, key_topic(off.topic_prefix)) == []
