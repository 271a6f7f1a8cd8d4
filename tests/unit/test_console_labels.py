"""The console's words for raw keys, and what the refused list shows of a kept body (pure)."""

from __future__ import annotations

import time

import orjson

from console.labels import actor_label, count_label, outcome_label
from console.refused import shown
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
