"""Sealing and redacting the writer's rows (pure): what reaches Postgres."""

import copy
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from events.envelope import Disposition
from sinks.postgres.protect import (
    VISIT_COLUMNS,
    BatchHashes,
    Protection,
    markers,
    open_payload,
    open_visit,
    protect,
    with_patient,
)
from sinks.postgres.rows import batch_rows
from spakinect_pipeline.phi.crypto import keyring_from, new_key_entry

from .test_rows import rec, visit

RING = keyring_from(new_key_entry("k1"), new_key_entry().split(":", 1)[1])
NOW = datetime(2026, 11, 29, tzinfo=UTC)
VISIT_AT = datetime(2024, 5, 2, 18, 40, tzinfo=UTC)


def visit_dict(row):
    return dict(zip(VISIT_COLUMNS, row, strict=True))


def test_patient_fields_are_sealed_the_rest_stays_plain_and_opens_again():
    rows = protect(batch_rows([rec(visit(1714675200000))]), Protection(RING, NOW))
    (event,) = rows.events
    (row,) = rows.visits
    stored = visit_dict(row)
    assert stored["location_id"] == "loc_12345"
    assert stored["completed_at"] == VISIT_AT
    assert all(stored[c].startswith("phi1:k1:") for c in ("patient_name", "patient_email"))
    assert "Jane" not in repr(row)
    assert "jane" not in repr(event)
    assert stored["patient_email_index"] == RING.email_index("jane.smith@example.com")
    assert stored["phi_redacted_at"] is None
    assert open_visit(stored, RING)["patient_email"] == "jane.smith@example.com"
    payload = open_payload(event[0], event[7], RING)
    assert payload["data"]["patient_details"]["name"] == "Jane Smith"
    assert payload["data"]["approved_treatments"] == ["Botox Injection"]
    assert event[8] == stored["patient_email_index"]
    assert event[9] is None


def test_forgotten_patient_by_email_or_gfe_id_is_written_redacted():
    plain = batch_rows([rec(visit(1714675200000))])
    for marker in (RING.email_index("JANE.smith@example.com"), RING.gfe_marker("gfe_abc123xyz789")):
        assert marker in markers(plain, RING)
        rows = protect(plain, Protection(RING, NOW, frozenset({marker})))
        stored = visit_dict(rows.visits[0])
        assert [stored[c] for c in ("patient_name", "patient_email", "patient_email_index")] == [
            None,
            None,
            None,
        ]
        assert stored["phi_redacted_at"] == NOW
        event = rows.events[0]
        assert orjson.loads(event[7])["data"]["patient_details"] is None
        assert event[8:] == (None, NOW)


def test_rows_older_than_the_retention_cutoff_are_written_redacted_newer_sealed():
    plain = batch_rows([rec(visit(1714675200000))])
    old = protect(plain, Protection(RING, NOW, cutoff=VISIT_AT + timedelta(seconds=1)))
    assert visit_dict(old.visits[0])["phi_redacted_at"] == NOW
    fresh = protect(plain, Protection(RING, NOW, cutoff=VISIT_AT - timedelta(seconds=1)))
    assert visit_dict(fresh.visits[0])["patient_email"].startswith("phi1:")


def test_events_without_patient_data_are_unchanged():
    failed = {"event": "visit.completed", "timestamp": 5, "success": False, "data": {"gfe_id": "g"}}
    rows = protect(batch_rows([rec(failed, Disposition.UNSUCCESSFUL)]), Protection(RING, NOW))
    (event,) = rows.events
    assert orjson.loads(event[7]) == failed
    assert event[8:] == (None, None)


class CountingRing:
    """The keyring's two hashes, counting the HMACs actually computed."""

    def __init__(self) -> None:
        self.calls = 0

    def gfe_marker(self, gfe_id: str) -> str:
        self.calls += 1
        return RING.gfe_marker(gfe_id)

    def email_index(self, email: str) -> str:
        self.calls += 1
        return RING.email_index(email)


def test_a_batch_computes_each_marker_and_index_once_with_the_keyrings_values():
    plain = batch_rows([rec(visit(1714675200000)), rec(visit(1714675300000))])
    counting = CountingRing()
    hashes = BatchHashes(counting)  # type: ignore[arg-type]
    found = markers(plain, hashes)
    assert found == markers(plain, RING)
    assert counting.calls == 2  # one gfe_id, one email, for two events and their visit row
    erased = frozenset({RING.gfe_marker("gfe_other")})
    memo = protect(plain, Protection(RING, NOW, erased, hashes=hashes))
    assert counting.calls == 2  # sealing reused them
    direct = protect(plain, Protection(RING, NOW, erased))
    assert [r[8] for r in memo.events] == [r[8] for r in direct.events]
    assert [visit_dict(r)["patient_email_index"] for r in memo.visits] == [
        visit_dict(r)["patient_email_index"] for r in direct.visits
    ]


def test_sealing_leaves_the_records_payload_as_it_was_so_a_retry_seals_it_again():
    record = rec(visit(1714675200000))
    before = copy.deepcopy(record.envelope.payload)
    plain = batch_rows([record])
    first = protect(plain, Protection(RING, NOW))
    erased = frozenset({RING.gfe_marker("gfe_abc123xyz789")})
    redacted = protect(plain, Protection(RING, NOW, erased))
    retry = protect(plain, Protection(RING, NOW))
    assert record.envelope.payload == before
    assert orjson.loads(redacted.events[0][7])["data"]["patient_details"] is None
    for rows in (first, retry):
        event = rows.events[0]
        assert open_payload(event[0], event[7], RING) == before


def test_the_stored_payload_is_the_payload_as_json_with_only_the_patient_part_replaced():
    record = rec(visit(1714675200000))
    erased = frozenset({RING.gfe_marker("gfe_abc123xyz789")})
    (event,) = protect(batch_rows([record]), Protection(RING, NOW, erased)).events
    expected = with_patient(record.envelope.payload, None)
    assert event[7] == orjson.dumps(expected).decode()
    assert list(expected) == list(record.envelope.payload)  # keys keep their places
    assert list(expected["data"]) == list(record.envelope.payload["data"])


def test_a_payload_json_cannot_hold_is_refused_when_sealed():
    payload = visit(1714675200000, note=2**70)  # pydantic keeps it; JSON text (orjson) cannot
    plain = batch_rows([rec(payload)])
    with pytest.raises(TypeError):
        protect(plain, Protection(RING, NOW))
