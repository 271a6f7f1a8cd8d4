"""Steps 6–8 of the ingress contract as one pure function: bytes in, a decision out.

No I/O here, so every refusal reason unit-tests without a server or Kafka.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from events.payloads import PayloadInvalid, ValidatedEvent, json_has_no_nul, validate_event
from events.registry import EVENT_TYPES

MAX_DEPTH = 32


@dataclass(frozen=True, slots=True)
class Accepted:
    """A known, valid event: publish it to its raw topic."""

    event: ValidatedEvent


@dataclass(frozen=True, slots=True)
class Unrouted:
    """A JSON object whose ``event`` we don't know yet: keep it on the unrouted topic."""

    event_name: str
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Refused:
    """Refused at step 6 (400), 7 (400) or 8 (422); ``reason`` is a stable machine word."""

    status: int
    reason: str
    message: str
    fields: list[dict[str, str]] = field(default_factory=list)


Decision = Accepted | Unrouted | Refused


def too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when containers nest deeper than ``limit`` (iterative: no recursion limit)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
    return False


def parse_body(raw: bytes) -> dict[str, Any] | Refused:
    """Step 6: UTF-8, JSON, an object, nesting no deeper than 32.

    orjson refuses invalid UTF-8 itself, so the body is decoded once; only a body it
    refuses is decoded again, to tell the sender which of the two it got wrong.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return Refused(400, "invalid_utf8", "body is not valid UTF-8")
        return Refused(400, "invalid_json", "body is not valid JSON")
    if not isinstance(body, dict):
        return Refused(400, "not_an_object", "body must be a JSON object")
    if too_deep(body):
        return Refused(400, "too_deep", f"JSON nests deeper than {MAX_DEPTH} levels")
    return body


def decide(raw: bytes, expected_event: str | None, now_ms: int) -> Decision:
    """Steps 6–8 for one request; ``expected_event`` is None on the single-URL endpoint."""
    body = parse_body(raw)
    if isinstance(body, Refused):
        return body
    event_name = body.get("event")
    if not isinstance(event_name, str) or not event_name:
        return Refused(400, "missing_event", "field 'event' is missing or not a string")
    if expected_event is not None and event_name != expected_event:
        return Refused(400, "wrong_event", f"this endpoint only accepts '{expected_event}'")
    event_type = EVENT_TYPES.get(event_name)
    if event_type is None:
        return Unrouted(event_name, body)
    try:
        return Accepted(validate_event(event_type, body, now_ms, nul_free=json_has_no_nul(raw)))
    except PayloadInvalid as exc:
        return Refused(422, "schema", "the payload does not match the schema", exc.fields)
