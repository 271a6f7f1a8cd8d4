"""The ingress's sealer without a broker: which key seals what, when a cached key may no
longer be trusted (an injected clock), and that the event id ignores the sealing."""

from datetime import UTC, datetime

import orjson
import pytest

from events.samples import SAMPLES
from events.topics import Topics
from ingress.intake import Accepted, Refused, Unrouted, decide
from ingress.outbound import outbound_for, unrouted_event_id
from ingress.sealing import STALE_S, Sealer
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.phi.crypto import keyring_from, new_key_entry
from spakinect_pipeline.phi.kafka_keys import field_ref
from spakinect_pipeline.phi.paths import parse_paths
from spakinect_pipeline.phi.unparsed import SEALED_HEADER
from spakinect_pipeline.publisher import PublishFailed

MASTER = keyring_from(new_key_entry("m1"), new_key_entry().split(":", 1)[1])
TOPICS = Topics("spakinect.")
AT = datetime(2026, 12, 7, 18, 30, tzinfo=UTC)


class Clock:
    now = 1000.0

    def __call__(self) -> float:
        return self.now


def sealer(clock: Clock, stored: list[tuple[str, bytes, bytes]], fail: bool = False) -> Sealer:
    async def send(topic: str, value: bytes, key: bytes) -> None:
        if fail:
            raise PublishFailed("no ack from Kafka within 5s")
        stored.append((topic, value, key))

    kafka = KafkaSettings(bootstrap_servers=["127.0.0.1:1"])
    made = Sealer(kafka, MASTER, parse_paths("data.notes"), send, clock=clock)
    made.follower.following_since = clock.now  # following the key topic from the start
    return made


def accepted(email: str = "jane@example.com") -> Accepted:
    body = orjson.loads(orjson.dumps(SAMPLES["visit.completed"]))
    body["data"]["patient_details"]["email"] = email
    decision = decide(orjson.dumps(body), None, 1714675200000)
    assert isinstance(decision, Accepted)
    return decision


async def test_a_visit_is_sealed_with_its_patients_key_stored_first_then_reused() -> None:
    clock, stored = Clock(), []
    s = sealer(clock, stored)
    s.follower.caught_up = clock.now
    first = await s.outbound(accepted(), TOPICS, AT)
    again = await s.outbound(accepted(), TOPICS, AT)
    envelope = orjson.loads(first.value)
    assert envelope["envelope_version"] == 2
    assert envelope["sealed"] == ["data.patient_details"]
    assert b"jane" not in first.value
    assert len(stored) == 1  # one key record, before the event; the second visit reuses it
    topic, _, record = stored[0]
    assert topic == "spakinect.phi-keys"
    assert record.decode().startswith(f"k1:{MASTER.email_index('jane@example.com')}:")
    ref = field_ref(envelope["payload"]["data"]["patient_details"])
    assert ref == field_ref(orjson.loads(again.value)["payload"]["data"]["patient_details"])
    assert first.event_id == outbound_for(accepted(), TOPICS, AT).event_id


async def test_a_tombstone_or_a_lagging_follower_means_a_new_key() -> None:
    clock, stored = Clock(), []
    s = sealer(clock, stored)
    s.follower.caught_up = clock.now
    key = await s.key_for("subject-a")
    s.evict(key.record_key)  # the forget's tombstone arrived
    rekeyed = await s.key_for("subject-a")
    assert rekeyed.key_id != key.key_id
    clock.now += STALE_S - 1
    assert await s.key_for("subject-a") == rekeyed  # minted 9 s ago: no tombstone missed yet
    clock.now += 1  # the follower has not caught up for STALE_S since the key was minted
    assert (await s.key_for("subject-a")).key_id != rekeyed.key_id
    s.follower.caught_up = clock.now
    clock.now += STALE_S - 1
    assert len({(await s.key_for("subject-a")).key_id for _ in range(3)}) == 1
    assert len(stored) == 3


async def test_a_tombstone_applied_before_the_minting_resumes_is_not_lost() -> None:
    """The follower may apply a forget's tombstone between the key record's ack and the
    minting coroutine resuming: that key must not be cached and reused."""
    clock, stored = Clock(), []
    s = sealer(clock, stored)
    s.follower.caught_up = clock.now
    stored_send = s.send

    async def acked_then_forgotten(topic: str, value: bytes, key: bytes) -> None:
        await stored_send(topic, value, key)
        s.evict(key.decode())  # the follower saw the tombstone first

    s.send = acked_then_forgotten
    destroyed = await s.key_for("subject-b")
    s.send = stored_send
    s.follower.caught_up = clock.now  # and the follower is caught up past it
    rekeyed = await s.key_for("subject-b")
    assert rekeyed.key_id != destroyed.key_id
    assert await s.key_for("subject-b") == rekeyed  # the new one is cached as usual
    assert len(stored) == 2


async def test_a_key_minted_before_the_follower_started_is_not_kept_fresh_by_its_catch_ups():
    """Its record, and a tombstone for it, may lie before the offset the follower began at."""
    clock, stored = Clock(), []
    s = sealer(clock, stored)
    s.follower.following_since = None  # the follower has not reached the broker yet
    early = await s.key_for("subject-c")
    clock.now += 1
    s.follower.following_since = clock.now  # it starts from the end, past early's record
    clock.now += STALE_S - 1
    s.follower.caught_up = clock.now  # and catches up: it says nothing of early
    assert (await s.key_for("subject-c")).key_id != early.key_id


async def test_unrouted_and_refused_bodies_use_the_hours_key_and_keep_their_plaintext_id() -> None:
    clock, stored = Clock(), []
    s = sealer(clock, stored)
    s.follower.caught_up = clock.now
    unrouted = Unrouted("visit.cancelled", {"event": "visit.cancelled", "email": "j@example.com"})
    out = await s.outbound(unrouted, TOPICS, AT)
    assert out.event_id == unrouted_event_id(unrouted)
    assert orjson.loads(out.value)["sealed"] == ["sealed"]
    assert b"j@example.com" not in out.value
    kept = await s.rejected(Refused(400, "invalid_json", "x"), b"{Jane", "/webhooks", TOPICS, AT)
    assert b"Jane" not in (kept.value or b"")
    assert dict(kept.headers)[SEALED_HEADER].startswith(b"epoch-2026120718:")
    assert len(stored) == 1  # one epoch key for the hour


async def test_treatment_updates_are_not_sealed_and_mint_nothing() -> None:
    clock, stored = Clock(), []
    s = sealer(clock, stored, fail=True)
    body = orjson.dumps(SAMPLES["treatment.updated"])
    decision = decide(body, None, 1714675200000)
    assert isinstance(decision, Accepted)
    out = await s.outbound(decision, TOPICS, AT)
    assert out.value == outbound_for(decision, TOPICS, AT).value
    with pytest.raises(PublishFailed):  # a visit needs a key: the same 503 as a publish
        await s.outbound(accepted(), TOPICS, AT)
