"""What the refused-bodies list may show of a kept body (pure): the non-patient fields that
parse (event type, entity id) and every field today's models find wrong or missing.

A kept body is the vendor's own, patient data included: only the event name and the
entity id are read from it, and field *paths* (never values) from its validation.
With ``PHI_KAFKA_SEAL=on`` it is kept sealed under its hour's key: :func:`kept_body`
opens it, or says why it no longer can (the key expired or was destroyed).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from pydantic import ValidationError

from events.registry import EVENT_TYPES
from spakinect_pipeline.phi.unparsed import SEALED_HEADER, Lookup, Unreadable, open_body

NO_MASTER_KEY = "sealed: this console cannot open it (PHI_KAFKA_MASTER_KEYS is not set)"

ENTITY_FIELDS = tuple(dict.fromkeys(t.entity_field for t in EVENT_TYPES.values()))


@dataclass(frozen=True, slots=True)
class Shown:
    event: str | None
    entity: str | None
    fields: list[str]


def kept_body(
    value: bytes, headers: Sequence[tuple[str, bytes]], lookup: Lookup | None
) -> bytes | str:
    """The body as received, or (a ``str``) why it cannot be read any more."""
    if not any(name == SEALED_HEADER for name, _ in headers):
        return value
    if lookup is None:
        return NO_MASTER_KEY
    try:
        return open_body(value, headers, lookup)
    except Unreadable as exc:
        return str(exc)


def _text(value: Any) -> str | None:
    return (
        str(value)[:200] if isinstance(value, str | int) and not isinstance(value, bool) else None
    )


def _paths(model: Any, body: dict[str, Any], now_ms: int) -> list[str]:
    try:
        model.model_validate(body, context={"now_ms": now_ms})
    except ValidationError as exc:
        return [
            ".".join(str(p) for p in e["loc"]) or "(body)" for e in exc.errors(include_input=False)
        ]
    return []


def shown(raw: bytes, header_fields: str, now_ms: int) -> Shown:
    """The event type and entity id when they parse, and every invalid field: the full
    model's and the envelope's (the ingress names the envelope's only when it fails)."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        body = None
    if not isinstance(body, dict):
        return Shown(None, None, [f for f in header_fields.split(",") if f])
    event = _text(body.get("event"))
    raw_data = body.get("data")
    data: dict[str, Any] = raw_data if isinstance(raw_data, dict) else {}
    event_type = EVENT_TYPES.get(event or "")
    names = (event_type.entity_field,) if event_type else ENTITY_FIELDS
    entity = next((t for n in names if (t := _text(data.get(n))) is not None), None)
    fields = [f for f in header_fields.split(",") if f]
    if event_type is not None:  # an unsuccessful event needs its envelope only
        models = (
            (event_type.head,)
            if body.get("success") is False
            else (event_type.head, event_type.full)
        )
        for model in models:
            fields += _paths(model, body, now_ms)
    return Shown(event, entity, list(dict.fromkeys(fields)))
