"""The envelope: the value of every raw and clean topic message.

Encoding is on the ingress hot path, so it is one ``orjson.dumps`` of a dict;
decoding validates with the pydantic model, so a consumer gets a clear error
for a message that is not an envelope.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from events.messages import SourceMessage
from events.registry import EVENT_TYPES

ENVELOPE_VERSION = 1
SEALED_ENVELOPE_VERSION = 2  # payload paths in ``sealed`` hold ``pk1:`` ciphertext


class Disposition(StrEnum):
    """What the dedupe stage decided for a distinct event."""

    APPLY = "apply"
    STALE = "stale"
    UNSUCCESSFUL = "unsuccessful"


class Envelope(BaseModel):
    """Our wrapper around the vendor body, with the identity the pipeline keys on."""

    model_config = ConfigDict(frozen=True)

    envelope_version: Literal[1, 2] = 1
    event_id: str = Field(min_length=1)
    event: str = Field(min_length=1)
    received_at: datetime
    disposition: Disposition | None = None
    sealed: tuple[str, ...] = Field(
        default=(),
        description=(
            "Version 2: the dotted payload paths whose values are sealed per patient"
            " (docs/patient-data-on-kafka.md)."
        ),
    )
    payload: dict[str, Any]

    @model_validator(mode="after")
    def _sealed_needs_version_2(self) -> Envelope:
        if self.sealed and self.envelope_version < SEALED_ENVELOPE_VERSION:
            raise ValueError("sealed paths need envelope_version 2")
        return self

    @property
    def entity_id(self) -> str:
        """The entity the event is about (its type's ``entity_field``); "" for an unknown type."""
        event_type = EVENT_TYPES.get(self.event)
        data = self.payload.get("data") or {}
        return str(data.get(event_type.entity_field) or "") if event_type else ""

    @property
    def timestamp(self) -> int:
        return int(self.payload["timestamp"])

    @property
    def success(self) -> bool:
        return bool(self.payload.get("success"))


@dataclass(frozen=True, slots=True)
class Record:
    """One message a stage read, decoded: its envelope, with where it came from."""

    envelope: Envelope
    source: SourceMessage


class EnvelopeInvalid(ValueError):
    """Bytes that are not an envelope; the message is safe to log (no values)."""


def format_instant(moment: datetime) -> str:
    """ISO 8601 UTC with milliseconds and ``Z``: ``2026-11-28T17:00:00.123Z``.

    ``isoformat`` rather than ``strftime``: this runs for every event, and is several
    times faster.
    """
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").removesuffix("+00:00") + "Z"


def encode_envelope(
    *,
    event_id: str,
    event: str,
    received_at: datetime,
    payload: dict[str, Any],
    disposition: Disposition | None = None,
    sealed: tuple[str, ...] | list[str] = (),
) -> bytes:
    """Serialise an envelope; ``disposition`` only on clean topics; ``sealed`` makes it v2."""
    value: dict[str, Any] = {
        "envelope_version": SEALED_ENVELOPE_VERSION if sealed else ENVELOPE_VERSION,
        "event_id": event_id,
        "event": event,
        "received_at": format_instant(received_at),
    }
    if disposition is not None:
        value["disposition"] = disposition.value
    if sealed:
        value["sealed"] = list(sealed)
    value["payload"] = payload
    return orjson.dumps(value)


def reencode(envelope: Envelope, disposition: Disposition) -> bytes:
    """The same envelope with the dedupe stage's disposition, for a clean topic.

    Sealed paths pass through as they are: the dedupe stage never reads patient fields.
    """
    return encode_envelope(
        event_id=envelope.event_id,
        event=envelope.event,
        received_at=envelope.received_at,
        payload=envelope.payload,
        disposition=disposition,
        sealed=envelope.sealed,
    )


def decode_envelope(raw: bytes | None) -> Envelope:
    """Parse and validate an envelope; raise :class:`EnvelopeInvalid` naming only fields."""
    if raw is None:
        raise EnvelopeInvalid("empty message value")
    try:
        return Envelope.model_validate_json(raw)
    except ValidationError as exc:
        fields = sorted({".".join(map(str, e["loc"])) or "(value)" for e in exc.errors()})
        raise EnvelopeInvalid("not a valid envelope: " + ", ".join(fields)) from None
