"""Pydantic models of the vendor's payloads, and the one function that validates them.

Validation is lax (``"1714675200000"`` is a timestamp), unknown fields are kept,
``pdf_link`` may be absent or null. A ``success: false`` event needs only
``event``, ``timestamp``, ``success`` and the entity id; a successful one needs
every documented field. Errors name field paths only, never submitted values,
because payloads carry patient data.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

if TYPE_CHECKING:
    from events.registry import EventType

MIN_TIMESTAMP_MS = 946_684_800_000  # 2000-01-01T00:00:00Z
MAX_FUTURE_MS = 24 * 3600 * 1000

NonEmptyStr = Annotated[str, Field(min_length=1, max_length=512)]
TreatmentList = list[Annotated[str, Field(max_length=512)]]


class OpenModel(BaseModel):
    """Unknown fields are accepted and kept: the vendor may add fields before telling us."""

    model_config = ConfigDict(extra="allow")


class Timestamped(OpenModel):
    """What every vendor event carries besides its ``event`` and ``data``."""

    timestamp: int
    success: bool

    @field_validator("timestamp")
    @classmethod
    def _timestamp_in_range(cls, value: int, info: ValidationInfo) -> int:
        if value < MIN_TIMESTAMP_MS:
            raise ValueError("timestamp is before 2000-01-01")
        now_ms = (info.context or {}).get("now_ms")
        if now_ms is not None and value > now_ms + MAX_FUTURE_MS:
            raise ValueError("timestamp is more than 24 h in the future")
        return value


class PatientDetails(OpenModel):
    name: str
    first_name: str
    last_name: str
    email: str


class VisitDataHead(OpenModel):
    """What even an unsuccessful visit must carry."""

    gfe_id: NonEmptyStr
    location_id: str | None = None
    status: str | None = None
    pdf_link: str | None = None


class VisitData(VisitDataHead):
    location_id: str
    status: str
    requested_treatments: TreatmentList
    approved_treatments: TreatmentList
    conditionally_approved_treatments: TreatmentList
    deferred_treatments: TreatmentList
    patient_details: PatientDetails


class TreatmentDataHead(OpenModel):
    treatment_id: NonEmptyStr


class TreatmentData(TreatmentDataHead):
    treatment_name: str
    action: Literal["created", "updated", "deleted"]


class VisitCompletedHead(Timestamped):
    event: Literal["visit.completed"]
    data: VisitDataHead


class VisitCompleted(VisitCompletedHead):
    """A Good Faith Exam visit finished and every treatment decision is made."""

    data: VisitData


class TreatmentUpdatedHead(Timestamped):
    event: Literal["treatment.updated"]
    data: TreatmentDataHead


class TreatmentUpdated(TreatmentUpdatedHead):
    """A treatment of the vendor's catalogue was created, updated or deleted."""

    data: TreatmentData


@dataclass(frozen=True, slots=True)
class ValidatedEvent:
    """A payload that passed validation, normalised, with its identity."""

    event: str
    entity_id: str
    timestamp: int
    success: bool
    payload: dict[str, Any]

    @property
    def event_id(self) -> str:
        return make_event_id(self.event, self.entity_id, self.timestamp)


class PayloadInvalid(Exception):
    """A schema violation; ``fields`` are dotted paths, safe to show the sender."""

    def __init__(self, fields: list[dict[str, str]]) -> None:
        super().__init__(f"{len(fields)} invalid field(s)")
        self.fields = fields


def make_event_id(event: str, entity_id: str, timestamp: int) -> str:
    """The vendor's own dedupe rule: entity id plus timestamp (with the event name)."""
    return f"{event}:{entity_id}:{timestamp}"


def validate_event(
    event_type: EventType, body: dict[str, Any], now_ms: int, *, nul_free: bool = False
) -> ValidatedEvent:
    """Validate ``body`` as ``event_type``; raise :class:`PayloadInvalid` with field paths.

    ``nul_free``: the caller knows no string holds a NUL (see :func:`json_has_no_nul`),
    so the walk that names the fields holding one is skipped.
    """
    nul_paths = (
        []
        if nul_free
        else [{"field": path, "error": "contains a NUL character"} for path in _nul_paths(body)]
    )
    context = {"now_ms": now_ms}
    try:
        model = _validated(event_type, body, context)
    except ValidationError as exc:
        raise PayloadInvalid(nul_paths + _field_errors(exc)) from None
    if nul_paths:
        raise PayloadInvalid(nul_paths)
    payload = model.model_dump(mode="json", exclude_unset=True)
    data = payload["data"]
    return ValidatedEvent(
        event=event_type.name,
        entity_id=str(data[event_type.entity_field]),
        timestamp=int(payload["timestamp"]),
        success=bool(payload["success"]),
        payload=payload,
    )


def _validated(event_type: EventType, body: dict[str, Any], context: dict[str, Any]) -> Any:
    """The full model for a successful event, the head for an unsuccessful one.

    ``success: true`` (the common case) is validated once, by the full model, which
    holds every rule of the head. Only when that fails, or ``success`` is anything
    else, does the head decide first, so refusals name the same fields as ever.
    """
    if body.get("success") is True:
        try:
            return event_type.full.model_validate(body, context=context)
        except ValidationError:
            pass
    head = event_type.head.model_validate(body, context=context)
    return event_type.full.model_validate(body, context=context) if head.success else head


def json_has_no_nul(raw: bytes) -> bool:
    """True when the JSON text ``raw`` cannot decode to a string holding NUL.

    JSON strings carry NUL only as the escape ``\\u0000`` (a raw control character is
    invalid JSON), so its absence is proof; its presence (or an escaped backslash
    before ``u0000``) leaves the answer to the walk over the decoded body.
    """
    return b"\\u0000" not in raw


def _field_errors(exc: ValidationError) -> list[dict[str, str]]:
    errors = []
    for error in exc.errors(include_input=False, include_url=False, include_context=False):
        path = ".".join(str(part) for part in error["loc"]) or "(body)"
        errors.append({"field": path, "error": error["type"]})
    return errors


def _nul_paths(value: Any, path: str = "") -> Iterator[str]:
    if isinstance(value, str):
        if "\x00" in value:
            yield path or "(body)"
    elif isinstance(value, dict):
        for key, item in value.items():
            name = "(key)" if "\x00" in str(key) else str(key)
            child = f"{path}.{name}" if path else name
            if name == "(key)":
                yield child
            yield from _nul_paths(item, child)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _nul_paths(item, f"{path}.{index}" if path else str(index))
