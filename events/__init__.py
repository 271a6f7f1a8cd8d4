"""The contract, pure (no I/O): vendor payload models, envelope, topic names, keys."""

from events.envelope import Disposition, Envelope, decode_envelope, encode_envelope
from events.payloads import (
    EVENT_TYPES,
    PayloadInvalid,
    TreatmentUpdated,
    ValidatedEvent,
    VisitCompleted,
    validate_event,
)
from events.topics import Topics

__all__ = [
    "EVENT_TYPES",
    "Disposition",
    "Envelope",
    "PayloadInvalid",
    "Topics",
    "TreatmentUpdated",
    "ValidatedEvent",
    "VisitCompleted",
    "decode_envelope",
    "encode_envelope",
    "validate_event",
]
