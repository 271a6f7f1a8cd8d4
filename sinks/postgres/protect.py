"""Patient fields of the writer's rows, sealed or redacted before they reach Postgres (pure).

The writer's rows (:mod:`sinks.postgres.rows`) carry plaintext; :func:`protect`
turns them into what is stored: the four ``gfe_visits.patient_*`` columns and
``spakinect_events.payload -> data.patient_details`` as ciphertext
(:mod:`spakinect_pipeline.phi.crypto`), plus the email's blind index. A row
whose patient was forgotten (an erasure marker matches its gfe_id or email)
or whose visit is older than ``PHI_RETENTION`` is stored redacted instead:
patient fields null, ``phi_redacted_at`` set. Everything else stays plain.
:func:`open_visit` and :func:`open_payload` are the inverse, for readers.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Protocol

import orjson

from events.registry import phi_events
from sinks.postgres.rows import BatchRows
from spakinect_pipeline.phi.crypto import Keyring, is_ciphertext
from spakinect_pipeline.phi.paths import Path, context_suffix, get_path, map_paths

PATIENT_COLUMNS = ("patient_name", "patient_first_name", "patient_last_name", "patient_email")
PHI_COLUMNS = ("patient_email_index", "phi_redacted_at")
EVENT_COLUMNS = (
    "event_id", "event", "entity_id", "occurred_at", "received_at", "success", "disposition",
    "payload", *PHI_COLUMNS,
)  # fmt: skip
VISIT_COLUMNS = (
    "gfe_id", "location_id", "status", "pdf_link", *PATIENT_COLUMNS, "completed_at", "event_id",
    *PHI_COLUMNS,
)  # fmt: skip
"""Column order of the protected rows (as the writer inserts them)."""
_VISIT_PATIENT = slice(4, 8)  # positions of PATIENT_COLUMNS in a visit row


class Hashes(Protocol):
    """Erasure markers and blind indexes (a :class:`Keyring` or a batch's memo of one)."""

    def gfe_marker(self, gfe_id: str) -> str: ...

    def email_index(self, email: str) -> str: ...


@dataclass(slots=True)
class BatchHashes:
    """One batch's markers and blind indexes, each HMAC computed once.

    The writer needs them twice: to look the batch's erasure markers up before
    its transaction (:func:`markers`), then to seal its rows (:func:`protect`);
    and a visit's event row and visit row hash the same gfe_id and email. Kept
    for one batch only: its keys are patient emails.
    """

    keyring: Keyring
    _gfe: dict[str, str] = field(default_factory=dict)
    _email: dict[str, str] = field(default_factory=dict)

    def gfe_marker(self, gfe_id: str) -> str:
        marker = self._gfe.get(gfe_id)
        if marker is None:
            marker = self._gfe[gfe_id] = self.keyring.gfe_marker(gfe_id)
        return marker

    def email_index(self, email: str) -> str:
        index = self._email.get(email)
        if index is None:
            index = self._email[email] = self.keyring.email_index(email)
        return index


@dataclass(frozen=True, slots=True)
class Protection:
    """What sealing one batch needs: keys, the batch's erasure markers, the retention cutoff.

    ``hashes``: the batch's :class:`BatchHashes` when :func:`markers` already made them;
    ``extra_paths``: ``PHI_EXTRA_PATHS`` (:mod:`spakinect_pipeline.phi.paths`).
    """

    keyring: Keyring
    now: datetime
    erased: frozenset[str] = frozenset()
    cutoff: datetime | None = None
    hashes: Hashes | None = None
    extra_paths: tuple[Path, ...] = ()

    @property
    def hashing(self) -> Hashes:
        return self.hashes if self.hashes is not None else self.keyring

    def redacts(self, when: datetime, markers: list[str]) -> bool:
        old = self.cutoff is not None and when < self.cutoff
        return old or any(m in self.erased for m in markers)


def visit_context(column: str, gfe_id: str) -> str:
    return f"gfe_visits.{column}:{gfe_id}"


def payload_context(event_id: str) -> str:
    return f"spakinect_events.payload:{event_id}"


def _patient(payload: Mapping[str, Any]) -> Any:
    data = payload.get("data")
    return data.get("patient_details") if isinstance(data, dict) else None


def _email_of(patient: Any) -> str | None:
    email = patient.get("email") if isinstance(patient, dict) else None
    return email if isinstance(email, str) and email else None


def markers(rows: BatchRows, hashes: Hashes) -> set[str]:
    """Every erasure marker that could match a row of the batch (to look up in one query)."""
    found: set[str] = set()
    patient_events = phi_events()
    for row in rows.events:
        if row[1] in patient_events:
            found.add(hashes.gfe_marker(row[2]))
            email = _email_of(_patient(row[7]))
            if email:
                found.add(hashes.email_index(email))
    for row in rows.visits:
        found.add(hashes.gfe_marker(row[0]))
        if row[7]:
            found.add(hashes.email_index(row[7]))
    return found


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


def with_patient(payload: Mapping[str, Any], patient: Any) -> dict[str, Any]:
    """A copy of ``payload`` whose ``data.patient_details`` is ``patient``, keys in place.

    A copy, not an edit: the payload is the batch's record's own, and a batch that
    is retried is sealed again from it.
    """
    return {**payload, "data": {**payload["data"], "patient_details": patient}}


def protect_event(row: tuple[Any, ...], p: Protection) -> tuple[Any, ...]:
    """An event row with its payload's patient part sealed (or redacted) and serialised.

    The patient part is ``data.patient_details`` and, in a visit's payload, the
    values at ``PHI_EXTRA_PATHS``. The row's payload is a dict
    (:class:`~sinks.postgres.rows.BatchRows`); the protected row's is its JSON
    text, + email index, redacted_at. Raises TypeError for a payload JSON
    cannot hold (an integer beyond 64 bits).
    """
    payload = row[7]
    patient = _patient(payload)
    extras = p.extra_paths if row[1] in phi_events() else ()
    if patient is None and all(get_path(payload, x) is None for x in extras):
        return (*row[:7], _json(payload), None, None)
    email = _email_of(patient)
    index = p.hashing.email_index(email) if email else None
    candidates = [p.hashing.gfe_marker(row[2]), *([index] if index else [])]
    context = payload_context(row[0])
    if p.redacts(row[3], candidates):
        gone = with_patient(payload, None) if patient is not None else payload
        return (*row[:7], _json(map_paths(gone, extras, lambda _p, _v: None)), None, p.now)
    if patient is not None:
        payload = with_patient(payload, p.keyring.encrypt(_json(patient), context))
    sealed = map_paths(
        payload, extras, lambda x, v: p.keyring.encrypt(_json(v), context + context_suffix(x))
    )
    return (*row[:7], _json(sealed), index, None)


def protect_visit(row: tuple[Any, ...], p: Protection) -> tuple[Any, ...]:
    """A visit row with sealed (or redacted) patient columns, + email index, redacted_at."""
    gfe_id, email = row[0], row[7]
    index = p.hashing.email_index(email) if email else None
    candidates = [p.hashing.gfe_marker(gfe_id), *([index] if index else [])]
    if p.redacts(row[8], candidates):
        return (*row[:4], None, None, None, None, *row[8:], None, p.now)
    sealed = [
        p.keyring.encrypt(value, visit_context(column, gfe_id)) if value is not None else None
        for column, value in zip(PATIENT_COLUMNS, row[_VISIT_PATIENT], strict=True)
    ]
    return (*row[:4], *sealed, *row[8:], index, None)


def protect(rows: BatchRows, p: Protection) -> BatchRows:
    return replace(
        rows,
        events=[protect_event(r, p) for r in rows.events],
        visits=[protect_visit(r, p) for r in rows.visits],
    )


def open_visit(row: Mapping[str, Any], keyring: Keyring) -> dict[str, str | None]:
    """The plaintext patient columns of a ``gfe_visits`` row (None where redacted or absent)."""
    return {
        column: keyring.decrypt(row[column], visit_context(column, row["gfe_id"]))
        if row[column] is not None
        else None
        for column in PATIENT_COLUMNS
    }


def open_payload(
    event_id: str,
    payload: Mapping[str, Any] | str,
    keyring: Keyring,
    extra_paths: tuple[Path, ...] = (),
) -> Any:
    """A stored payload with ``data.patient_details`` (and sealed extra paths) decrypted."""
    body = orjson.loads(payload) if isinstance(payload, str) else dict(payload)
    context = payload_context(event_id)
    sealed = _patient(body)
    if isinstance(sealed, str):
        body = with_patient(body, orjson.loads(keyring.decrypt(sealed, context)))

    def opened(path: Path, value: Any) -> Any:
        if not is_ciphertext(value):
            return value
        return orjson.loads(keyring.decrypt(value, context + context_suffix(path)))

    return map_paths(body, extra_paths, opened)
