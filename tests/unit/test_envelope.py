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
