"""Data keys for Kafka (pure): wrapped under the master key, sealed fields bound to their place."""

import pytest

from spakinect_pipeline.phi.crypto import PhiDecryptError, keyring_from, new_key_entry
from spakinect_pipeline.phi.kafka_keys import (
    field_context,
    field_ref,
    new_data_key,
    open_value,
    seal_payload,
    subject_of,
    unwrap,
    wrap,
)
from spakinect_pipeline.phi.paths import PATIENT

from .test_rows import visit

INDEX = new_key_entry().split(":", 1)[1]
MASTER = keyring_from(new_key_entry("m1"), INDEX)
EVENT = "visit.completed:gfe_abc123xyz789:1714675200000"


def test_a_data_key_round_trips_through_its_record_and_only_under_its_own_name():
    key = new_data_key(MASTER.email_index("jane@example.com"))
    value = wrap(key, MASTER)
    assert key.material not in value
    assert unwrap(key.record_key, value, MASTER) == key
    other = new_data_key("someone-else")
    with pytest.raises(PhiDecryptError):
        unwrap(other.record_key, value, MASTER)  # a wrapped key moved to another subject
    with pytest.raises(PhiDecryptError):
        unwrap(key.record_key, value, keyring_from(new_key_entry("m1"), INDEX))  # other master


def test_the_subject_is_the_emails_blind_index_else_the_gfe_marker_never_the_email():
    body = visit(1714675200000)
    email = body["data"]["patient_details"]["email"]
    assert subject_of(body, MASTER.index) == MASTER.email_index(email)
    body["data"]["patient_details"] = None
    assert subject_of(body, MASTER.index) == MASTER.gfe_marker("gfe_abc123xyz789")


def test_a_blank_email_is_keyed_by_the_gfe_marker_so_a_forget_by_gfe_id_reaches_it():
    patient = dict(visit(1714675200000)["data"]["patient_details"], email="  ")
    body = visit(1714675200000, patient_details=patient)  # the shared sample left alone
    assert subject_of(body, MASTER.index) == MASTER.gfe_marker("gfe_abc123xyz789")
    assert subject_of(body, MASTER.index) != MASTER.email_index("")


def test_sealed_fields_open_with_their_key_in_their_place_only():
    body = visit(1714675200000)
    key = new_data_key(subject_of(body, MASTER.index) or "")
    payload, sealed = seal_payload(EVENT, body, key)
    assert sealed == ["data.patient_details"]
    token = payload["data"]["patient_details"]
    assert field_ref(token) == (key.subject, key.key_id)
    assert "Jane" not in token
    assert open_value(token, key, field_context(EVENT, PATIENT)) == body["data"]["patient_details"]
    with pytest.raises(PhiDecryptError):
        open_value(token, key, field_context("visit.completed:gfe_other:1", PATIENT))
    with pytest.raises(PhiDecryptError):
        open_value(token, new_data_key(key.subject), field_context(EVENT, PATIENT))
    assert body["data"]["patient_details"]["first_name"] == "Jane"  # the input is left as it was
