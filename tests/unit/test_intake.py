import orjson
import pytest

from events.samples import SAMPLES
from ingress.intake import Accepted, Refused, Unrouted, decide, too_deep

NOW = 1_800_000_000_000
SAMPLE = orjson.dumps(SAMPLES["visit.completed"])


def nested(depth: int) -> bytes:
    return b'{"a":' * (depth - 1) + b"{}" + b"}" * (depth - 1)


def test_valid_sample_is_accepted():
    decision = decide(SAMPLE, "visit.completed", NOW)
    assert isinstance(decision, Accepted)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"\xff\xfe", "invalid_utf8"),
        (b"{not json", "invalid_json"),
        (b"[1, 2]", "not_an_object"),
        (b'"text"', "not_an_object"),
        (nested(33), "too_deep"),
        (b'{"data": {}}', "missing_event"),
        (b'{"event": 5}', "missing_event"),
    ],
)
def test_step_six_and_seven_refusals_are_400(raw, reason):
    decision = decide(raw, None, NOW)
    assert isinstance(decision, Refused)
    assert (decision.status, decision.reason) == (400, reason)


def test_nesting_of_exactly_32_is_allowed():
    assert not too_deep(orjson.loads(nested(32)))
    assert too_deep(orjson.loads(nested(33)))


def test_typed_endpoint_refuses_another_event():
    decision = decide(SAMPLE, "treatment.updated", NOW)
    assert isinstance(decision, Refused)
    assert decision.reason == "wrong_event"


def test_unknown_event_on_single_url_is_unrouted_not_refused():
    decision = decide(b'{"event": "visit.cancelled", "x": 1}', None, NOW)
    assert isinstance(decision, Unrouted)
    assert decision.event_name == "visit.cancelled"


def test_unknown_event_on_typed_endpoint_is_wrong_event():
    decision = decide(b'{"event": "visit.cancelled"}', "visit.completed", NOW)
    assert isinstance(decision, Refused)
    assert decision.status == 400


def test_schema_violation_is_422_with_fields():
    body = dict(SAMPLES["visit.completed"], timestamp="soon")
    decision = decide(orjson.dumps(body), "visit.completed", NOW)
    assert isinstance(decision, Refused)
    assert decision.status == 422
    assert [f["field"] for f in decision.fields] == ["timestamp"]


def test_a_nul_escaped_anywhere_in_the_raw_body_is_still_found_and_named() -> None:
    # The fast path skips the walk only when the raw JSON has no \u0000 escape at all.
    body = orjson.loads(orjson.dumps(SAMPLES["visit.completed"]))
    body["data"]["patient_details"]["name"] = "Ja\x00ne"
    body["data"]["requested_treatments"] = ["Bo\x00tox"]
    decision = decide(orjson.dumps(body), "visit.completed", 1714675200000)
    assert isinstance(decision, Refused)
    assert decision.status == 422
    assert {f["field"] for f in decision.fields} == {
        "data.patient_details.name",
        "data.requested_treatments.0",
    }
    # A backslash before "u0000" is not a NUL: accepted, after the walk says so.
    body = orjson.loads(orjson.dumps(SAMPLES["visit.completed"]))
    body["data"]["location_id"] = "loc\\u0000"
    assert isinstance(decide(orjson.dumps(body), "visit.completed", 1714675200000), Accepted)
