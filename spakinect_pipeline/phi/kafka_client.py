"""The client helper: open the sealed patient fields of a topic message (version 2 envelopes).

A subscriber entitled to patient data gets the master key (``PHI_KAFKA_MASTER_KEYS``)
and Read on the key topic; then::

    fields = SealedFields(kafka, master)
    await fields.refresh()            # at start, and now and then (tombstones evict keys)
    opened = fields.open(envelope)    # a dict: sealed paths opened, or None when forgotten
    opened = await fields.open_latest(envelope)  # the same, refreshing first for a new key

Build it from the ``PHI_KAFKA_MASTER_KEYS`` text alone with
:meth:`SealedFields.from_master_keys` (a reader needs no ``PHI_INDEX_KEY``).

A path whose key was destroyed (the patient was forgotten) comes back as
``None`` and ``opened["forgotten"]`` is True. Without the helper a subscriber
sees the rest of the message as before and each sealed path as an opaque
``pk1:`` string (docs/patient-data-on-kafka.md).
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any

from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.phi.crypto import (
    KEY_BYTES,
    BlindIndex,
    Keyring,
    PhiDecryptError,
    parse_keys,
)
from spakinect_pipeline.phi.kafka_keys import field_context, field_ref, open_value
from spakinect_pipeline.phi.key_store import KeyStore
from spakinect_pipeline.phi.opening import Status, open_fields
from spakinect_pipeline.phi.paths import get_path, replace_path


class SealedFields:
    def __init__(self, kafka: KafkaSettings, master: Keyring) -> None:
        self.keys = KeyStore(kafka, master)

    @classmethod
    def from_master_keys(cls, kafka: KafkaSettings, master_keys: str) -> SealedFields:
        """From ``PHI_KAFKA_MASTER_KEYS`` (``id:base64``, newest first); PhiKeyError if malformed.

        Unwrapping never computes a blind index, so the keyring's index is a random
        one that nothing uses: subscribers are not given ``PHI_INDEX_KEY``.
        """
        unused = BlindIndex(secrets.token_bytes(KEY_BYTES))
        return cls(kafka, Keyring(parse_keys(master_keys), unused))

    async def refresh(self) -> None:
        await self.keys.refresh()

    async def open_latest(self, envelope: Mapping[str, Any]) -> dict[str, Any]:
        """:meth:`open`, after a refresh when a sealed field names a key not seen yet.

        The ingress stores a patient's key just before the patient's first event,
        so a key newer than the last refresh is new, not destroyed.
        """
        sealed = envelope.get("sealed") or ()
        payload = envelope.get("payload") or {}
        opening = open_fields(str(envelope.get("event_id")), sealed, payload, self.keys)
        if opening.status is Status.UNKNOWN:
            await self.refresh()
        return self.open(envelope)

    def open(self, envelope: Mapping[str, Any]) -> dict[str, Any]:
        """The envelope with every path in ``sealed`` opened (None where the key is gone)."""
        out = dict(envelope)
        payload: dict[str, Any] = dict(envelope.get("payload") or {})
        forgotten = False
        for dotted in envelope.get("sealed") or ():
            path = tuple(str(dotted).split("."))
            token = get_path(payload, path)
            ref = field_ref(token)
            if ref is None:
                continue  # not sealed (already null, or a plaintext version-1 body)
            key = self.keys.get(*ref)
            if key is None:
                forgotten = True
                payload = replace_path(payload, path, None)
                continue
            try:
                value = open_value(token, key, field_context(str(envelope["event_id"]), path))
            except PhiDecryptError:
                value, forgotten = None, True
            payload = replace_path(payload, path, value)
        out["payload"] = payload
        out["forgotten"] = forgotten
        return out
