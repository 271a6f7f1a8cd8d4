"""Patient data outside ``data.patient_details``: extra JSON paths treated as patient data (pure).

A vendor may put a patient's name or email in another field of a visit body
(free-text notes, a nested contact). ``PHI_EXTRA_PATHS`` names such fields as
dotted paths from the body's root (``data.notes,data.contact.name``); every
store treats the value at each path exactly like ``data.patient_details``:
sealed in Postgres, nulled by a forget and by the retention sweep, sealed on
Kafka with the patient's key. Object keys only (no list indexes); a path
missing from a body is simply absent, never created.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

PATIENT = ("data", "patient_details")
"""The path every visit body keeps its patient in (always patient data)."""

_SEGMENT = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

Path = tuple[str, ...]


class PathError(ValueError):
    """A ``PHI_EXTRA_PATHS`` entry is malformed."""


def parse_paths(text: str) -> tuple[Path, ...]:
    """``data.notes,data.contact.name`` into paths; ``data.patient_details`` is implied."""
    paths: list[Path] = []
    for position, item in enumerate((p.strip() for p in text.split(",") if p.strip()), 1):
        path = tuple(item.split("."))
        if not all(_SEGMENT.match(s) for s in path):
            raise PathError(f"entry {position}: dotted object keys only (letters, digits, _ -)")
        if path[0] != "data" or len(path) < 2:
            raise PathError(f"entry {position}: must start with data. (the vendor's fields)")
        if path[: len(PATIENT)] == PATIENT:
            raise PathError(f"entry {position}: data.patient_details is always patient data")
        if path not in paths:
            paths.append(path)
    return tuple(paths)


def get_path(body: Mapping[str, Any], path: Path) -> Any:
    """The value at ``path``, or None when a step is missing or not an object."""
    node: Any = body
    for key in path:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def replace_path(body: Mapping[str, Any], path: Path, value: Any) -> dict[str, Any]:
    """A copy of ``body`` with the value at ``path`` replaced; the body itself is left as it
    was (a batch that is retried is sealed again from it). Absent paths stay absent."""
    out = dict(body)
    head, *rest = path
    if head not in out:
        return out
    if not rest:
        out[head] = value
    elif isinstance(out[head], Mapping):
        out[head] = replace_path(out[head], tuple(rest), value)
    return out


def map_paths(
    body: Mapping[str, Any], paths: tuple[Path, ...], change: Callable[[Path, Any], Any]
) -> dict[str, Any]:
    """A copy of ``body`` where each present, non-null value at ``paths`` is ``change(path,
    value)``."""
    out = dict(body)
    for path in paths:
        value = get_path(out, path)
        if value is not None:
            out = replace_path(out, path, change(path, value))
    return out


def context_suffix(path: Path) -> str:
    """What binds a sealed extra field to its place (appended to the payload's context)."""
    return ":" + ".".join(path)
