"""JSON Schema export of the envelope and every registered vendor payload (``make schemas``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from events.envelope import Envelope
from events.registry import EVENT_TYPES


def models() -> dict[str, Any]:
    """Each schema's name and model: the envelope, then every event type's payload."""
    payloads = {t.schema_name: t.full for t in EVENT_TYPES.values()}
    return {"envelope": Envelope, **payloads}


def schemas() -> dict[str, dict[str, Any]]:
    return {name: model.model_json_schema() for name, model in models().items()}


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(out: Path) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, schema in schemas().items():
        path = out / f"{name}.schema.json"
        path.write_text(render(schema))
        paths.append(path)
    return paths
