from datetime import UTC, datetime

import pytest

from events.envelope import Disposition, Envelope, Record
from events.messages import SourceMessage
from events.samples import SAMPLES
from sinks.postgres.rows import batch_rows, columns


def rec(payload, disposition=Disposition.APPLY, event="visit.completed") -> Record:
    entity = payload["data"].get("gfe_id") or payload["data"].get("treatment_id")
    envelope = Envelope(
        event_id=f"{event}:{entity}:{payload['timestamp']}",
        event=event,
        received_at=datetime.now(UTC),
        disposition=disposition,
        payload=payload,
    )
    return Record(envelope, SourceMessage("t", 0, 0, None, None, []))


def visit(ts, **data):
    payload = dict(SAMPLES["visit.completed"], timestamp=ts)
    payload["data"] = dict(payload["data"], **data)
    return payload


def test_sample_visit_rows():
    rows = batch_rows([rec(visit(1714675200000))])
    assert len(rows.events) == 1
    (row,) = rows.visits
    assert row[0] == "gfe_abc123xyz789"
    assert row[4] == "Jane Smith"
    assert row[8] == datetime(2024, 5, 2, 18, 40, tzinfo=UTC)
    assert sorted(rows.visit_treatments) == sorted(
        [
            ("gfe_abc123xyz789", "Botox Injection", "requested"),
            ("gfe_abc123xyz789", "Dermal Filler", "requested"),
            ("gfe_abc123xyz789", "Botox Injection", "approved"),
            ("gfe_abc123xyz789", "Dermal Filler", "conditionally_approved"),
        ]
    )


def test_only_the_newest_applied_visit_per_entity_in_a_batch_becomes_state():
    rows = batch_rows([rec(visit(3)), rec(visit(5)), rec(visit(4))])
    assert [r[9] for r in rows.visits] == ["visit.completed:gfe_abc123xyz789:5"]
    assert len(rows.events) == 3


def test_stale_and_unsuccessful_are_recorded_not_applied():
    failed = {"event": "visit.completed", "timestamp": 9, "success": False, "data": {"gfe_id": "g"}}
    rows = batch_rows([rec(visit(1), Disposition.STALE), rec(failed, Disposition.UNSUCCESSFUL)])
    assert rows.visits == []
    assert len(rows.events) == 2
    assert sorted(d for _, d in rows.not_applied) == ["stale", "unsuccessful"]


def test_duplicate_treatment_names_collapse_to_one_row_per_decision():
    rows = batch_rows([rec(visit(1, approved_treatments=["A", "A"]))])
    assert rows.visit_treatments.count(("gfe_abc123xyz789", "A", "approved")) == 1


def test_treatment_deleted_sets_the_flag():
    payload = {
        "event": "treatment.updated",
        "timestamp": 7,
        "success": True,
        "data": {"treatment_id": "t1", "treatment_name": "X", "action": "deleted"},
    }
    rows = batch_rows([rec(payload, event="treatment.updated")])
    assert rows.treatments[0][:4] == ("t1", "X", "deleted", True)


def treatment(ts, treatment_id="t1", action="updated"):
    data = {"treatment_id": treatment_id, "treatment_name": "X", "action": action}
    return {"event": "treatment.updated", "timestamp": ts, "success": True, "data": data}


def test_an_event_row_carries_the_envelopes_own_payload_parsed_once():
    record = rec(visit(1))
    (row,) = batch_rows([record]).events
    assert row[7] is record.envelope.payload  # not serialised here, not copied


def test_state_rows_are_the_newest_per_entity_in_order_of_first_sight():
    records = [
        rec(treatment(5, "t1"), event="treatment.updated"),
        rec(visit(2, gfe_id="g1")),
        rec(treatment(9, "t2"), event="treatment.updated"),
        rec(treatment(7, "t1", "deleted"), event="treatment.updated"),
        rec(visit(1, gfe_id="g2")),
        rec(visit(3, gfe_id="g1"), Disposition.STALE),
    ]
    rows = batch_rows(records)
    assert [(r[0], r[2]) for r in rows.treatments] == [("t1", "deleted"), ("t2", "updated")]
    assert [(r[0], r[9]) for r in rows.visits] == [
        ("g1", "visit.completed:g1:2"),
        ("g2", "visit.completed:g2:1"),
    ]
    assert [r[6] for r in rows.events] == ["apply"] * 5 + ["stale"]
    assert rows.not_applied == [("visit.completed:g1:3", "stale")]


def test_a_record_without_a_timestamp_is_malformed():
    payload = visit(1)
    del payload["timestamp"]
    with pytest.raises(KeyError):
        batch_rows([rec(visit(2)), rec(payload)])


def test_columns_transpose_rows_into_unnest_arrays():
    assert columns([(1, "a"), (2, "b")], 2) == [(1, 2), ("a", "b")]
    assert columns([], 3) == [(), (), ()]


def test_columns_refuse_rows_of_another_width():
    with pytest.raises(ValueError, match="3 columns where 2"):
        columns([(1, "a", None)], 2)
    with pytest.raises(ValueError, match="shorter"):  # zip's strict check names it
        columns([(1, "a"), (2,)], 2)
