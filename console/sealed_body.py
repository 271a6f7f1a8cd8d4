"""A Kafka message body as the phi role sees it: sealed patient fields opened, or ``forgotten``.

Version-2 envelopes hold each patient's fields sealed under the patient's
own key (docs/patient-data-on-kafka.md). The console opens them for the
``phi`` role only, with the master key it is given
(``PHI_KAFKA_MASTER_KEYS``); a path whose key was destroyed (the patient was
forgotten) reads ``"forgotten"``, one that does not open (damaged) stays the
``pk1:`` text it is, the others open. Other roles never see a body. Without a master key the
phi role sees the sealed paths as they are: opaque.
"""

from __future__ import annotations

from typing import Any

import orjson

from spakinect_pipeline.phi.kafka_client import SealedFields
from spakinect_pipeline.phi.opening import Status, open_fields
from spakinect_pipeline.phi.paths import get_path, replace_path

FORGOTTEN = "forgotten"


def shown_envelope(envelope: dict[str, Any], fields: SealedFields) -> dict[str, Any]:
    """The envelope with each sealed path opened, ``"forgotten"``, or left sealed (pure).

    Path by path: a dead letter is often one whose fields did not all open, and
    the ones that do are what the phi role came to read.
    """
    payload = envelope.get("payload")
    if not isinstance(payload, dict):
        return envelope
    event_id = str(envelope.get("event_id"))
    shown = payload
    for dotted in [str(p) for p in envelope.get("sealed") or ()]:
        path = tuple(dotted.split("."))
        opening = open_fields(event_id, [dotted], payload, fields.keys)
        if opening.status is Status.OPENED:
            shown = replace_path(shown, path, get_path(opening.payload, path))
        elif opening.status is Status.FORGOTTEN:
            shown = replace_path(shown, path, FORGOTTEN)
    return {**envelope, "payload": shown}


async def phi_body(value: bytes | None, fields: SealedFields | None) -> str:
    """The text of a message body for the phi role (refreshing the keys first)."""
    text = (value or b"").decode("utf-8", "replace")
    if fields is None or b'"sealed"' not in (value or b""):
        return text
    try:
        envelope = orjson.loads(value or b"")
    except orjson.JSONDecodeError:
        return text
    if not isinstance(envelope, dict):
        return text
    try:
        await fields.refresh()  # new keys, and tombstones: a forget shows at once
    except Exception:  # noqa: BLE001 - key topic unreachable: show what we know
        return text
    return orjson.dumps(shown_envelope(envelope, fields), option=orjson.OPT_INDENT_2).decode()
