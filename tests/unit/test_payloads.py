import copy

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from events.payloads import PayloadInvalid, json_has_no_nul, validate_event
from events.registry import EVENT_TYPES
from events.samples import SAMPLES

NOW = 1_800_000_000_000
VISIT = EVENT_TYPES["visit.completed"]
TREATMENT = EVENT_TYPES["treatment.updated"]


def visit(**changes):
    body = copy.deepcopy(SAMPLES["visit.completed"])
    body.update(changes)
    return body


def fields(exc: PayloadInvalid) -> set[str]:
    return {f["field"] for f in exc.fields}


def test_vendor_sample_gives_the_documented_event_id():
    event = validate_event(VISIT, visit(), NOW)
    assert event.event_id == "visit.completed:gfe_abc123xyz789:1714675200000"
    assert event.entity_id == "gfe_abc123xyz789"
    assert event.payload == SAMPLES["visit.completed"]


def test_treatment_sample_is_valid():
    event = validate_event(TREATMENT, SAMPLES["treatment.updated"], NOW)
    assert event.event_id == "treatment.updated:treatment_001:1714675200000"


def test_lax_timestamp_string_is_accepted_and_normalised():
    event = validate_event(VISIT, visit(timestamp="1714675200000"), NOW)
    assert event.timestamp == 1714675200000
    assert event.payload["timestamp"] == 1714675200000


def test_extra_fields_are_kept_at_every_level():
    body = visit(extra_top="x")
    body["data"]["new_field"] = {"a": 1}
    event = validate_event(VISIT, body, NOW)
    assert event.payload["extra_top"] == "x"
    assert event.payload["data"]["new_field"] == {"a": 1}


@pytest.mark.parametrize("pdf", [None, "absent"])
def test_pdf_link_may_be_absent_or_null(pdf):
    body = visit()
    if pdf == "absent":
        del body["data"]["pdf_link"]
    else:
        body["data"]["pdf_link"] = None
    validate_event(VISIT, body, NOW)


def test_unsuccessful_event_needs_only_the_head():
    body = {
        "event": "visit.completed",
        "timestamp": 1714675200000,
        "success": False,
        "data": {"gfe_id": "gfe_1"},
    }
    event = validate_event(VISIT, body, NOW)
    assert event.success is False
    assert event.event_id == "visit.completed:gfe_1:1714675200000"


def test_missing_fields_are_listed_by_path_without_values():
    body = visit()
    del body["data"]["patient_details"]["email"]
    del body["data"]["location_id"]
    with pytest.raises(PayloadInvalid) as info:
        validate_event(VISIT, body, NOW)
    assert fields(info.value) == {"data.patient_details.email", "data.location_id"}
    assert "jane" not in str(info.value.fields).lower()


@pytest.mark.parametrize(
    ("timestamp", "ok"),
    [
        (946_684_799_999, False),  # before 2000
        (NOW + 24 * 3600 * 1000, True),  # exactly 24 h ahead
        (NOW + 24 * 3600 * 1000 + 1, False),
    ],
)
def test_timestamp_bounds(timestamp, ok):
    if ok:
        validate_event(VISIT, visit(timestamp=timestamp), NOW)
    else:
        with pytest.raises(PayloadInvalid) as info:
            validate_event(VISIT, visit(timestamp=timestamp), NOW)
        assert fields(info.value) == {"timestamp"}


def test_nul_character_anywhere_is_a_schema_violation():
    body = visit()
    body["data"]["patient_details"]["name"] = "Ja\x00ne"
    with pytest.raises(PayloadInvalid) as info:
        validate_event(VISIT, body, NOW)
    assert fields(info.value) == {"data.patient_details.name"}


def test_wrong_types_are_422_paths():
    with pytest.raises(PayloadInvalid) as info:
        validate_event(VISIT, visit(success="maybe"), NOW)
    assert "success" in fields(info.value)


def test_unknown_treatment_action_is_refused():
    body = copy.deepcopy(SAMPLES["treatment.updated"])
    body["data"]["action"] = "renamed"
    with pytest.raises(PayloadInvalid) as info:
        validate_event(TREATMENT, body, NOW)
    assert fields(info.value) == {"data.action"}


@given(st.recursive(st.text(), lambda kids: st.lists(kids) | st.dictionaries(st.text(), kids)))
def test_json_without_a_nul_escape_decodes_to_strings_without_nul(value: object) -> None:
    raw = orjson.dumps(value)

    def strings(item: object) -> list[str]:
        if isinstance(item, str):
            return [item]
        if isinstance(item, dict):
            return [s for k, v in item.items() for s in [k, *strings(v)]]
        if isinstance(item, list):
            return [s for child in item for s in strings(child)]
        return []

    if any("\x00" in s for s in strings(orjson.loads(raw))):
        assert not json_has_no_nul(raw)  # never a false "no NUL" (the reverse may be wrong)


def test_a_successful_event_refused_names_the_head_fields_first_as_ever():
    # One validation serves success: true; a refusal still comes from the head first,
    # so a body without its entity id is told about that, not every missing field.
    body = visit()
    del body["data"]["gfe_id"]
    del body["data"]["location_id"]
    with pytest.raises(PayloadInvalid) as info:
        validate_event(VISIT, body, NOW)
    assert fields(info.value) == {"data.gfe_id"}
    body = visit()
    del body["data"]["location_id"]
    with pytest.raises(PayloadInvalid) as info:
        validate_event(VISIT, body, NOW)
    assert fields(info.value) == {"data.location_id"}


def test_success_given_as_a_string_is_validated_in_two_steps_and_kept_lax():
    event = validate_event(VISIT, visit(success="true"), NOW)
    assert event.success is True
    assert event.payload["data"]["patient_details"]["email"] == "jane.smith@example.com"
