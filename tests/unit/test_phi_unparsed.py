"""Refused and unrouted bodies sealed whole under an hourly epoch key, the janitor's list (pure)."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from spakinect_pipeline.phi.kafka_keys import (
    DataKey,
    cipher,
    field_context,
    field_ref,
    new_data_key,
    open_value,
    record_key,
)
from spakinect_pipeline.phi.unparsed import (
    SEALED_HEADER,
    Lookup,
    Unreadable,
    epoch_start,
    epoch_subject,
    expired_epoch_records,
    open_body,
    seal_body,
    seal_unrouted,
)

HOUR = datetime(2026, 12, 7, 18, tzinfo=UTC)
BODY = b'{"event": "visit.completed", "data": {"patient_details": {"name": "Jane Smith"}}'
DAY = 86400.0


def keys(*known: DataKey) -> Lookup:
    by_ref = {(k.subject, k.key_id): k for k in known}
    return lambda subject, key_id: by_ref.get((subject, key_id))


def test_an_epoch_subject_names_its_utc_hour_and_no_colon():
    moment = datetime(2026, 12, 7, 19, 59, tzinfo=UTC)
    subject = epoch_subject(moment.astimezone(timezone(timedelta(hours=2))))  # 21:59 local
    assert subject == "epoch-2026120719"
    assert ":" not in subject  # k1: and pk1: split on it
    assert epoch_start(subject) == datetime(2026, 12, 7, 19, tzinfo=UTC)
    assert epoch_start("ab12" * 16) is None  # a patient's blind index
    assert epoch_start("epoch-garbage") is None


def test_a_refused_body_is_kept_sealed_and_opens_with_its_hours_key_only():
    key = new_data_key(epoch_subject(HOUR))
    value, ref = seal_body(BODY, key)
    assert b"Jane" not in value
    assert b"patient_details" not in value
    assert value.startswith(b"pk1:epoch-2026120718:")
    assert ref == f"{key.subject}:{key.key_id}"
    headers = [("reason", b"schema"), (SEALED_HEADER, ref.encode())]
    assert open_body(value, headers, keys(key)) == BODY
    with pytest.raises(Unreadable, match="no longer readable"):
        open_body(value, headers, keys())  # the key was destroyed (janitor, forget)
    impostor = DataKey(key.subject, key.key_id, new_data_key("x").material)
    with pytest.raises(Unreadable):
        open_body(value, headers, keys(impostor))
    with pytest.raises(Unreadable):
        open_body(b"\xff not a token", headers, keys(key))


def test_a_body_kept_before_sealing_is_read_as_it_is():
    assert open_body(BODY, [("reason", b"schema")], keys()) == BODY


def test_an_unrouted_body_is_one_sealed_field_the_client_helper_opens():
    key = new_data_key(epoch_subject(HOUR))
    body = {"event": "visit.cancelled", "email": "jane@example.com"}
    payload, sealed = seal_unrouted("visit.cancelled:sha256-ab", body, key)
    assert sealed == ["sealed"]
    assert list(payload) == ["sealed"]
    assert "jane" not in payload["sealed"]
    assert field_ref(payload["sealed"]) == (key.subject, key.key_id)
    opened = open_value(
        payload["sealed"], key, field_context("visit.cancelled:sha256-ab", ("sealed",))
    )
    assert opened == body


def test_the_janitor_destroys_live_epoch_keys_once_their_hour_ended_ttl_ago_and_nothing_else():
    old, recent = epoch_subject(HOUR - timedelta(days=8)), epoch_subject(HOUR)
    records: dict[str, bytes | None] = {
        record_key(old, "aa"): b"{}",
        record_key(old, "bb"): None,  # already a tombstone
        record_key(recent, "cc"): b"{}",
        record_key("ab12" * 16, "dd"): b"{}",  # a patient's key: a forget's business
    }
    assert expired_epoch_records(records, HOUR, 7 * DAY) == [record_key(old, "aa")]
    # the hour 18:00-19:00 stays readable for a full TTL after its last body
    edge = HOUR + timedelta(hours=1, days=7)
    assert expired_epoch_records(records, edge - timedelta(seconds=1), 7 * DAY) == [
        record_key(old, "aa")
    ]
    assert record_key(recent, "cc") in expired_epoch_records(records, edge, 7 * DAY)


def test_one_cipher_per_data_key_is_built_and_reused():
    key = new_data_key("s")
    assert cipher(key.material) is cipher(key.material)
    assert cipher(key.material) is not cipher(new_data_key("s").material)
