"""The console's words for raw keys, what the refused list shows of a kept body and what a
replay makes of a dead letter (pure)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import orjson

from console.labels import actor_label, count_label, outcome_label
from console.refused import shown
from console.replays import Replay, dlq_steps, letter_state
from events.samples import sample_visit


def test_raw_keys_are_put_in_words() -> None:
    assert count_label("still_refused:schema") == (
        "still refused: schema (the payload does not match the schema)"
    )
    assert count_label("published").startswith("accepted now")
    assert actor_label("console:-") == actor_label("console:(not logged in)")
    assert actor_label("console:ana") == "console:ana"
    assert outcome_label("dlq.replay.done", {"sent": 1, "of": 2}) == "replayed 1 of 2"
    assert outcome_label("phi.reveal", {}) == "—"


def test_a_refused_body_shows_its_ids_and_every_invalid_field_never_the_patient() -> None:
    body = sample_visit("gfe_1")
    del body["success"]
    del body["data"]["location_id"]
    found = shown(orjson.dumps(body), "success", int(time.time() * 1000))
    assert (found.event, found.entity) == ("visit.completed", "gfe_1")
    assert found.fields == ["success", "data.location_id"]
    assert "Jane" not in repr(found)
    garbage = shown(b"{not json", "", 0)
    assert (garbage.event, garbage.entity, garbage.fields) == (None, None, [])


def test_a_letter_is_open_until_a_replay_kafka_took_and_resolved_once_written() -> None:
    at = datetime(2026, 12, 7, 15, tzinfo=UTC)
    sent = Replay(0, 5, "e", "console:ana", at, "sent")
    failed = Replay(0, 6, "e", "console:ana", at, "failed")
    assert letter_state(None, "postgres", False).state == "open"
    assert letter_state(failed, "postgres", False).text.startswith("open: replayed")
    assert letter_state(sent, "postgres", False).state == "replayed"
    assert letter_state(sent, "postgres", True).state == "resolved"
    assert letter_state(sent, "email", True).state == "replayed"  # no row to judge it by
    headers = {"stage": "postgres", "error_type": "X"}
    done, still = dlq_steps(
        [(at, 0, 5, headers), (at, 0, 6, headers)], {(0, 5): sent, (0, 6): failed}
    )
    assert [s.state for s in done] == ["replayed"]
    assert "by console:ana" in done[0].detail
    assert [s.state for s in still] == ["failed"]
