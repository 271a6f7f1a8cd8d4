"""docs/schemas/ is generated from the models; CI fails if they drift (run `make schemas`)."""

from pathlib import Path

from events.schemas import render, schemas

DOCS = Path(__file__).parents[2] / "docs" / "schemas"


def test_checked_in_schemas_match_the_models():
    for name, schema in schemas().items():
        path = DOCS / f"{name}.schema.json"
        assert path.exists(), f"{path} is missing: run `make schemas`"
        assert path.read_text() == render(schema), f"{path} drifted: run `make schemas`"


def test_envelope_schema_names_the_contract_fields():
    envelope = schemas()["envelope"]
    assert {"event_id", "event", "received_at", "payload"} <= set(envelope["required"])
    assert set(envelope["$defs"]["Disposition"]["enum"]) == {"apply", "stale", "unsuccessful"}
