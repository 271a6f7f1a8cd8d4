"""What the ingress writes for a decision, pure: topic, key, envelope bytes, headers.

Shared by the request handler and by ``rejected replay``, so a replayed body
becomes exactly the message it would have been had it been accepted at once.
A refused body is kept as it came, on the rejected topic (:func:`rejected_message`).
With ``PHI_KAFKA_SEAL=on`` the caller passes what seals (:mod:`ingress.sealing`
holds the keys); the event id is always computed from the plaintext, so a
vendor's retry of the same body gets the same id and dedupes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from events.envelope import encode_envelope, format_instant
from events.topics import Topics, headers
from ingress.intake import Accepted, Refused, Unrouted
from spakinect_pipeline.phi.unparsed import SEALED_HEADER
from spakinect_pipeline.publisher import Message

Seal = Callable[[str, dict[str, Any]], tuple[dict[str, Any], list[str]]]
"""(event id, payload) -> the payload with some paths sealed, and those paths."""


@dataclass(frozen=True, slots=True)
class Outbound:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]
    event_id: str
    event: str
    routed: bool


def unrouted_event_id(unrouted: Unrouted) -> str:
    """Stable for the same body, so the vendor's retries of an unknown event dedupe too."""
    body = orjson.dumps(unrouted.body, option=orjson.OPT_SORT_KEYS)
    return f"{unrouted.event_name}:sha256-{hashlib.sha256(body).hexdigest()[:32]}"


def outbound_for(
    decision: Accepted | Unrouted, topics: Topics, received_at: datetime, seal: Seal | None = None
) -> Outbound:
    """The raw-topic message for an accepted event, or the unrouted one for an unknown type;
    with ``seal``, an envelope version 2 listing the sealed paths."""
    if isinstance(decision, Accepted):
        event = decision.event
        event_id, name, payload = event.event_id, event.event, event.payload
        topic, key, routed = topics.raw_for(name), event.entity_id, True
    else:
        event_id, name, payload = unrouted_event_id(decision), decision.event_name, decision.body
        topic, key, routed = topics.unrouted, decision.event_name, False
    assert topic is not None  # every known event type has a raw topic
    sealed: list[str] = []
    if seal is not None:
        payload, sealed = seal(event_id, payload)
    value = encode_envelope(
        event_id=event_id, event=name, received_at=received_at, payload=payload, sealed=sealed
    )
    return Outbound(
        topic, key.encode(), value, headers(event=name, event_id=event_id), event_id, name, routed
    )


def rejected_message(
    refused: Refused,
    raw: bytes,
    route: str,
    topics: Topics,
    received_at: datetime,
    sealed: tuple[bytes, str] | None = None,
) -> Message:
    """The refused body as received, with why and where it was refused (field paths only);
    ``sealed``: the body sealed whole and its key reference, kept instead (header ``sealed``)."""
    kept_headers = headers(
        reason=refused.reason,
        status=str(refused.status),
        route=route,
        received_at=format_instant(received_at),
        fields=",".join(f["field"] for f in refused.fields),
    )
    if sealed is not None:
        raw = sealed[0]
        kept_headers.append((SEALED_HEADER, sealed[1].encode()))
    return Message(topics.rejected, raw, None, kept_headers)
