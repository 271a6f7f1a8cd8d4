"""Per-patient data keys for Kafka messages and the ``pk1:`` sealed-field format (pure).

docs/patient-data-on-kafka.md has the design. A data key is 32 random bytes,
stored on the compacted key topic wrapped (AES-256-GCM) under a master key of
``PHI_KAFKA_MASTER_KEYS``; its record key names the patient only by a keyed
hash (``k1:<subject>:<key id>``). A sealed field is one string::

    pk1:<subject>:<key id>:<base64url(nonce || ciphertext || tag)>

the JSON of the original value, associated data ``<event_id>:<dotted path>``.
Destroying the data key (a tombstone) makes every copy unreadable.
"""

from __future__ import annotations

import base64
import binascii
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from spakinect_pipeline.phi.crypto import (
    KEY_BYTES,
    NONCE_BYTES,
    BlindIndex,
    Keyring,
    PhiDecryptError,
    normalize_email,
)
from spakinect_pipeline.phi.nonces import NoncePool
from spakinect_pipeline.phi.paths import PATIENT, Path, get_path, map_paths

FIELD_VERSION = "pk1"
RECORD_VERSION = "k1"
_NONCES = NoncePool(NONCE_BYTES)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def record_key(subject: str, key_id: str) -> str:
    return f"{RECORD_VERSION}:{subject}:{key_id}"


def subject_prefix(subject: str) -> str:
    """What every record key of ``subject`` starts with (a forget destroys them all)."""
    return f"{RECORD_VERSION}:{subject}:"


@dataclass(frozen=True)
class DataKey:
    """One unwrapped data key; ``ref`` is what sealed fields name it by."""

    subject: str
    key_id: str
    material: bytes

    def __repr__(self) -> str:  # never print key material
        return f"DataKey({self.subject[:8]}…:{self.key_id})"

    @property
    def record_key(self) -> str:
        return record_key(self.subject, self.key_id)


def new_data_key(subject: str) -> DataKey:
    return DataKey(subject, secrets.token_hex(8), secrets.token_bytes(KEY_BYTES))


def wrap(key: DataKey, master: Keyring) -> bytes:
    """The key topic's record value: the data key sealed under the newest master key."""
    token = master.encrypt(_b64(key.material), key.record_key)
    return orjson.dumps({"v": 1, "wrapped": token})


def unwrap(record_key_text: str, value: bytes, master: Keyring) -> DataKey:
    """A key record back to its data key; PhiDecryptError when it does not open."""
    version, subject, key_id = record_key_text.split(":", 2)
    if version != RECORD_VERSION:
        raise PhiDecryptError("not a k1 key record")
    try:
        token = orjson.loads(value)["wrapped"]
    except (orjson.JSONDecodeError, KeyError, TypeError):
        raise PhiDecryptError("key record is damaged") from None
    return DataKey(subject, key_id, _unb64(master.decrypt(token, record_key_text)))


def subject_of(payload: Mapping[str, Any], index: BlindIndex) -> str | None:
    """The patient a visit body is keyed by: its email's blind index, else its gfe marker.

    A blank email (spaces only) is no email: its index would be one subject shared by
    every such visit, which a forget by gfe id (the only way to name them) never destroys.
    """
    patient = get_path(payload, PATIENT)
    email = patient.get("email") if isinstance(patient, dict) else None
    if isinstance(email, str) and normalize_email(email):
        return index.email_index(email)
    gfe_id = get_path(payload, ("data", "gfe_id"))
    return index.gfe_marker(gfe_id) if isinstance(gfe_id, str) and gfe_id else None


@lru_cache(maxsize=4096)
def cipher(material: bytes) -> AESGCM:
    """One AESGCM per data key: building it costs more than sealing a field.

    Bounded (least recently used first out): a reader may know a million keys, and
    a destroyed key's cipher would otherwise stay in memory after its tombstone.
    """
    return AESGCM(material)


def seal_value(value: Any, key: DataKey, context: str) -> str:
    nonce = _NONCES.take()
    sealed = cipher(key.material).encrypt(nonce, orjson.dumps(value), context.encode())
    return f"{FIELD_VERSION}:{key.subject}:{key.key_id}:{_b64(nonce + sealed)}"


def field_ref(token: str) -> tuple[str, str] | None:
    """(subject, key id) of a sealed field, None for anything else."""
    parts = token.split(":", 3) if isinstance(token, str) else []
    return (parts[1], parts[2]) if len(parts) == 4 and parts[0] == FIELD_VERSION else None


def open_value(token: str, key: DataKey, context: str) -> Any:
    raw = _unb64(token.split(":", 3)[3])
    try:
        plain = cipher(key.material).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
    except (InvalidTag, ValueError, binascii.Error):
        raise PhiDecryptError("sealed field does not open (wrong place or damaged)") from None
    return orjson.loads(plain)


def field_context(event_id: str, path: Path) -> str:
    return f"{event_id}:{'.'.join(path)}"


def seal_payload(
    event_id: str, payload: Mapping[str, Any], key: DataKey, extra_paths: tuple[Path, ...] = ()
) -> tuple[dict[str, Any], list[str]]:
    """The payload with each present patient path sealed, and the dotted paths sealed."""
    sealed: list[str] = []

    def seal(path: Path, value: Any) -> str:
        sealed.append(".".join(path))
        return seal_value(value, key, field_context(event_id, path))

    return map_paths(payload, (PATIENT, *extra_paths), seal), sealed


def seal_bytes(data: bytes, key: DataKey, context: bytes) -> str:
    """A ``pk1:`` token of raw bytes (a whole body that may not even be JSON)."""
    nonce = _NONCES.take()
    sealed = cipher(key.material).encrypt(nonce, data, context)
    return f"{FIELD_VERSION}:{key.subject}:{key.key_id}:{_b64(nonce + sealed)}"


def open_bytes(token: str, key: DataKey, context: bytes) -> bytes:
    """What :func:`seal_bytes` sealed; PhiDecryptError when it does not open."""
    try:
        raw = _unb64(token.split(":", 3)[3])
        return cipher(key.material).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context)
    except (InvalidTag, ValueError, IndexError, binascii.Error):
        raise PhiDecryptError("sealed bytes do not open (wrong place or damaged)") from None
