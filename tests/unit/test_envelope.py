from datetime import UTC, datetime

import pytest

from events.envelope import Disposition, EnvelopeInvalid, decode_envelope, encode_envelope


def test_round_trip_and_format():
    moment = datetime(2026, 11, 28, 17, 0, 0, 123456, tzinfo=UTC)
    raw = encode_envelope(
        event_id="e",
        event="visit.completed",
        received_at=moment,
        payload={"timestamp": 1, "data": {"gfe_id": "g"}},
        disposition=Disposition.APPLY,
    )
    assert b'"received_at":"2026-11-28T17:00:00.123Z"' in raw
    envelope = decode_envelope(raw)
    assert envelope.disposition is Disposition.APPLY
    assert envelope.entity_id == "g"


@pytest.mark.parametrize("raw", [None, b"", b"not json", b'{"event_id": "x"}'])
def test_invalid_envelopes_raise_a_clear_error(raw):
    with pytest.raises(EnvelopeInvalid):
        decode_envelope(raw)


def test_sealed_paths_make_a_version_2_envelope_that_survives_the_dedupe_reencode():
    from events.envelope import reencode

    moment = datetime(2026, 11, 28, 17, 0, tzinfo=UTC)
    payload = {"timestamp": 1, "data": {"gfe_id": "g", "patient_details": "pk1:s:k:xyz"}}
    raw = encode_envelope(
        event_id="e",
        event="visit.completed",
        received_at=moment,
        payload=payload,
        sealed=["data.patient_details"],
    )
    envelope = decode_envelope(raw)
    assert (envelope.envelope_version, envelope.sealed) == (2, ("data.patient_details",))
    clean = decode_envelope(reencode(envelope, Disposition.APPLY))
    assert clean.sealed == ("data.patient_details",)
    assert clean.payload == payload
    assert clean.envelope_version == 2
    plain = decode_envelope(
        encode_envelope(event_id="e", event="visit.completed", received_at=moment, payload={})
    )
    assert (plain.envelope_version, plain.sealed) == (1, ())


def test_sealed_paths_on_a_version_1_envelope_are_refused():
    raw = (
        b'{"envelope_version":1,"event_id":"e","event":"visit.completed",'
        b'"received_at":"2026-11-28T17:00:00Z","sealed":["data.patient_details"],"payload":{}}'
    )
    with pytest.raises(EnvelopeInvalid, match="value"):
        decode_envelope(raw)
