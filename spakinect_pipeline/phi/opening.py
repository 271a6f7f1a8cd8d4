"""What a stage makes of a version-2 envelope's sealed fields (pure): opened, forgotten,
unknown or damaged.

The client helper (:class:`~spakinect_pipeline.phi.kafka_client.SealedFields`)
reads a destroyed key and a damaged field alike as ``None``; a stage that
writes or emails must not. A destroyed key means the patient was forgotten
(write redacted, send nothing); a key never seen may be one the ingress has
just minted (refresh, then retry); a field that does not open with a key we
hold is damaged (dead-letter it, nothing lost). docs/patient-data-on-kafka.md
has the design. No I/O here: the key lookup is given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol

from spakinect_pipeline.phi.crypto import PhiDecryptError
from spakinect_pipeline.phi.kafka_keys import DataKey, field_context, field_ref, open_value
from spakinect_pipeline.phi.paths import Path, get_path, replace_path

KeyRef = tuple[str, str]
"""(subject, key id) of a data key, as a sealed field names it."""


class KeyLookup(Protocol):
    """The materialized key topic (:class:`~spakinect_pipeline.phi.key_store.KeyStore`)."""

    def get(self, subject: str, key_id: str) -> DataKey | None: ...

    def destroyed(self, subject: str, key_id: str) -> bool: ...


class Status(StrEnum):
    PLAIN = "plain"  # version 1, or nothing sealed: the payload as it came
    OPENED = "opened"
    FORGOTTEN = "forgotten"  # a key was destroyed: every sealed path is null
    UNKNOWN = "unknown"  # a key this reader has never seen (yet)
    DAMAGED = "damaged"  # a field or key record that does not open


@dataclass(frozen=True, slots=True)
class Opening:
    """The payload to use (sealed paths opened, or null), and why; ``reason`` names no value."""

    status: Status
    payload: dict[str, Any]
    unknown: tuple[KeyRef, ...] = ()
    subjects: tuple[str, ...] = ()  # the subjects of the sealed fields (blind index, gfe marker)
    reason: str = ""


def _nulled(payload: dict[str, Any], paths: Sequence[Path]) -> dict[str, Any]:
    for path in paths:
        payload = replace_path(payload, path, None)
    return payload


def open_fields(
    event_id: str, sealed: Sequence[str], payload: Mapping[str, Any], keys: KeyLookup
) -> Opening:
    """Open each sealed path of one envelope; the first reason not to wins.

    Precedence: a destroyed key (forgotten) over an unknown one over a damaged
    field, so a forgotten patient is never retried nor dead-lettered; a
    forgotten envelope has every sealed path null, whichever keys still exist.
    """
    body = dict(payload)
    if not sealed:
        return Opening(Status.PLAIN, body)
    paths = [tuple(str(dotted).split(".")) for dotted in sealed]
    tokens = [(path, get_path(body, path)) for path in paths]
    refs = {path: field_ref(token) for path, token in tokens if token is not None}
    subjects = tuple(sorted({ref[0] for ref in refs.values() if ref is not None}))
    if any(ref is not None and keys.destroyed(*ref) for ref in refs.values()):
        return Opening(Status.FORGOTTEN, _nulled(body, paths), subjects=subjects)
    if any(ref is None for ref in refs.values()):
        return Opening(Status.DAMAGED, body, reason="a sealed path holds no pk1 field")
    opened: dict[Path, Any] = {}
    unknown: list[KeyRef] = []
    for path, ref in refs.items():
        assert ref is not None
        try:
            key = keys.get(*ref)
        except PhiDecryptError:
            return Opening(Status.DAMAGED, body, reason="key record does not unwrap")
        if key is None:
            unknown.append(ref)
            continue
        try:
            opened[path] = open_value(get_path(body, path), key, field_context(event_id, path))
        except (PhiDecryptError, ValueError):
            return Opening(Status.DAMAGED, body, reason="sealed field does not open")
    if unknown:
        return Opening(Status.UNKNOWN, body, unknown=tuple(sorted(set(unknown))), subjects=subjects)
    for path, value in opened.items():
        body = replace_path(body, path, value)
    return Opening(Status.OPENED, body, subjects=subjects)
