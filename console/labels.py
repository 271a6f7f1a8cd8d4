"""Words for what the console shows in place of raw keys (pure): refused-body counts, audit
actors and audit details."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ANONYMOUS = "console:(not logged in)"
"""The actor of what happens before a login: failed and throttled attempts."""
_ANONYMOUS_ACTORS = {ANONYMOUS, "console:-"}  # console:- in entries written before

REASONS = {
    "schema": "the payload does not match the schema",
    "invalid_json": "not valid JSON",
    "invalid_utf8": "not valid UTF-8",
    "not_an_object": "not a JSON object",
    "too_deep": "nested too deep",
    "missing_event": "no event field",
    "wrong_event": "an event sent to another event's URL",
}


def reason_label(reason: str) -> str:
    return f"{reason} ({REASONS[reason]})" if reason in REASONS else reason


def count_label(key: str) -> str:
    """A re-validation count's key (``published``, ``unrouted``, ``still_refused:<reason>``)."""
    if key == "published":
        return "accepted now (a replay publishes them)"
    if key == "unrouted":
        return "an event type not routed yet (a replay keeps them on the unrouted topic)"
    if key.startswith("still_refused:"):
        return f"still refused: {reason_label(key.removeprefix('still_refused:'))}"
    return key


def actor_label(actor: str) -> str:
    return "not logged in (the login form)" if actor in _ANONYMOUS_ACTORS else actor


def outcome_label(action: str, details: Mapping[str, Any]) -> str:
    """What an audited action came to, in words; other details as ``key: value``."""
    if action == "dlq.replay.done":
        return f"replayed {details.get('sent', '?')} of {details.get('of', '?')}"
    if action.endswith(".replay.failed"):
        return f"failed: {details.get('error', '?')}"
    if action == "rejected.replay.done":
        still = sum(v for k, v in details.items() if k.startswith("still_refused:"))
        return (
            f"published {details.get('published', 0)}, unrouted {details.get('unrouted', 0)},"
            f" still refused {still}"
        )
    parts = []
    for key, value in details.items():
        shown = (
            ", ".join(map(str, value[:5])) + (" …" if len(value) > 5 else "")
            if isinstance(value, list)
            else value
        )
        parts.append(f"{key}: {shown}")
    return "; ".join(parts) or "—"
