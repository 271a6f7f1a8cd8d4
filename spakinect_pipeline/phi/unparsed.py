"""Bodies the pipeline cannot parse, sealed whole under an hourly epoch key (pure).

A refused body (bad JSON, schema failure) or an unrouted one (unknown event
type) names no patient the pipeline can key by, yet may hold one, so it is
sealed whole under the data key of its hour: subject ``epoch-<yyyymmddhh>``
(UTC). Not ``epoch:``, as the design first said: ``:`` separates the parts of
a ``k1:`` record key and a ``pk1:`` token, and a subject must not contain it.
The key janitor destroys an hour's keys once ``PHI_UNPARSED_KEY_TTL`` has
passed since the hour ended: that is how long a refused body can be replayed
and an unrouted one read (docs/patient-data-on-kafka.md).

- **rejected**: the message value is the ``pk1:`` token (ASCII) of the raw
  bytes, associated data ``rejected``; header ``sealed`` = ``<subject>:<key id>``.
- **unrouted**: an envelope version 2 with ``sealed: ["sealed"]`` and
  ``payload: {"sealed": "<pk1: token of the body's JSON>"}``, associated data
  ``<event_id>:sealed``, so the client helper opens it like any sealed field:
  opened, ``payload.sealed`` is the vendor's body.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from spakinect_pipeline.phi.crypto import PhiDecryptError
from spakinect_pipeline.phi.kafka_keys import (
    DataKey,
    field_context,
    field_ref,
    open_bytes,
    seal_bytes,
    seal_value,
)

EPOCH_PREFIX = "epoch-"
SEALED_HEADER = "sealed"  # on the rejected topic: "<subject>:<key id>" of the sealed body
REJECTED_CONTEXT = b"rejected"
UNROUTED_PATH = ("sealed",)
HOUR = timedelta(hours=1)

Lookup = Callable[[str, str], DataKey | None]


class Unreadable(Exception):
    """A sealed body whose key was destroyed or expired: it will never open again."""

    MESSAGE = "no longer readable: its epoch key expired (PHI_UNPARSED_KEY_TTL) or was destroyed"


def epoch_subject(moment: datetime) -> str:
    return f"{EPOCH_PREFIX}{moment.astimezone(UTC):%Y%m%d%H}"


def epoch_start(subject: str) -> datetime | None:
    """The hour an epoch subject covers, None for a patient's subject."""
    if not subject.startswith(EPOCH_PREFIX):
        return None
    try:
        return datetime.strptime(subject.removeprefix(EPOCH_PREFIX), "%Y%m%d%H").replace(tzinfo=UTC)
    except ValueError:
        return None


def expired_epoch_records(
    records: Mapping[str, bytes | None], now: datetime, ttl_s: float
) -> list[str]:
    """Live key records of epoch hours that ended more than ``ttl_s`` ago (the janitor's list)."""
    doomed = []
    for name, value in records.items():
        parts = name.split(":")
        start = epoch_start(parts[1]) if value is not None and len(parts) == 3 else None
        if start is not None and start + HOUR + timedelta(seconds=ttl_s) <= now:
            doomed.append(name)
    return sorted(doomed)


def seal_body(raw: bytes, key: DataKey) -> tuple[bytes, str]:
    """A refused body's kept value (a ``pk1:`` token) and its ``sealed`` header."""
    token = seal_bytes(raw, key, REJECTED_CONTEXT)
    return token.encode(), f"{key.subject}:{key.key_id}"


def open_body(value: bytes, headers: Sequence[tuple[str, bytes]], lookup: Lookup) -> bytes:
    """A kept refused body as received: as is when not sealed, else opened.

    Raises :class:`Unreadable` when its key is gone (or the value is damaged).
    """
    if not any(name == SEALED_HEADER for name, _ in headers):
        return value
    token = value.decode("ascii", "replace")
    ref = field_ref(token)
    key = lookup(*ref) if ref is not None else None
    if key is None:
        raise Unreadable(Unreadable.MESSAGE)
    try:
        return open_bytes(token, key, REJECTED_CONTEXT)
    except PhiDecryptError:
        raise Unreadable("no longer readable: the sealed body is damaged") from None


def seal_unrouted(
    event_id: str, payload: Mapping[str, Any], key: DataKey
) -> tuple[dict[str, Any], list[str]]:
    """An unrouted body's payload, sealed whole, and its ``sealed`` list."""
    token = seal_value(dict(payload), key, field_context(event_id, UNROUTED_PATH))
    return {UNROUTED_PATH[0]: token}, [UNROUTED_PATH[0]]
