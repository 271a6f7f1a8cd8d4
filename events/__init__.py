"""The contract, pure (no I/O): vendor payload models, envelope, topic names, keys."""

from events.envelope import Disposition, Envelope, decode_envelope, encode_envelope
from events.payloads import (
    PayloadInvalid,
    TreatmentUpdated,
    ValidatedEvent,
    VisitCompleted,
    validate_event,
)
from events.registry import EVENT_TYPES, EventType, register
from events.topics import Topics

__all__ = [
    "EVENT_TYPES",
    "Disposition",
    "Envelope",
    "EventType",
    "PayloadInvalid",
    "Topics",
    "TreatmentUpdated",
    "ValidatedEvent",
    "VisitCompleted",
    "decode_envelope",
    "encode_envelope",
    "register",
    "validate_event",
]
