"""Field encryption (AES-256-GCM) and keyed hashes for patient data; pure, no I/O.

A ciphertext is one ASCII string, safe in a ``text`` column or a JSON string::

    phi1:<key id>:<base64url(nonce(12) || ciphertext || tag(16)), unpadded>

``phi1`` versions the format; the key id names the key of
``PHI_ENCRYPTION_KEYS`` that sealed it, so old rows stay readable while a new
key is first in the list, and ``phi rotate-key`` finds the rows still sealed
with an older one. The associated data is the caller's *context* (column and
row id, e.g. ``gfe_visits.patient_email:gfe_abc``): a ciphertext copied to
another column or row does not decrypt.

Lookups and erasure markers use HMAC-SHA256 under a separate index key
(``PHI_INDEX_KEY``), not derived from the encryption keys: rotating an
encryption key must not change the blind index of an email or the erasure
marker of a forgotten patient (markers cannot be recomputed, the plaintext
is gone).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
import secrets
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from spakinect_pipeline.phi.nonces import NoncePool

VERSION = "phi1"
KEY_BYTES = 32
NONCE_BYTES = 12
_KEY_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
_NONCES = NoncePool(NONCE_BYTES)  # one per process: nonces need not be per key, only unique


class PhiKeyError(ValueError):
    """A key setting is malformed; the message never contains key material."""


class PhiDecryptError(Exception):
    """A ciphertext cannot be opened: unknown key id, wrong context or tampered bytes."""


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def parse_key(text: str, what: str) -> bytes:
    """A 32-byte key from standard or URL-safe base64."""
    try:
        standard = text.strip().replace("-", "+").replace("_", "/")
        key = base64.b64decode(standard + "=" * (-len(standard) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise PhiKeyError(f"{what}: not base64") from None
    if len(key) != KEY_BYTES:
        raise PhiKeyError(f"{what}: must be {KEY_BYTES} bytes (base64 of 32 random bytes)")
    return key


def parse_keys(text: str) -> tuple[tuple[str, bytes], ...]:
    """``id:base64key,id:base64key`` (newest first) into (id, key) pairs."""
    keys: list[tuple[str, bytes]] = []
    for position, item in enumerate((p.strip() for p in text.split(",") if p.strip()), 1):
        key_id, sep, material = item.partition(":")
        if not sep or not _KEY_ID.match(key_id):
            raise PhiKeyError(f"entry {position}: expected <key id>:<base64 key>")
        if any(key_id == known for known, _ in keys):
            raise PhiKeyError(f"entry {position}: key id {key_id} appears twice")
        keys.append((key_id, parse_key(material, f"entry {position} ({key_id})")))
    if not keys:
        raise PhiKeyError("no key given")
    return tuple(keys)


def new_key_entry(key_id: str | None = None) -> str:
    """A fresh ``id:base64key`` entry for ``PHI_ENCRYPTION_KEYS`` (or a bare index key)."""
    material = base64.b64encode(secrets.token_bytes(KEY_BYTES)).decode()
    return f"{key_id or 'k' + secrets.token_hex(3)}:{material}"


def normalize_email(email: str) -> str:
    return email.strip().casefold()


@dataclass(frozen=True)
class BlindIndex:
    """Keyed hashes for lookups and erasure markers (all the email stage needs)."""

    key: bytes
    _keyed: hmac.HMAC = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Keyed once; each hash copies this state instead of re-deriving the key pads.
        object.__setattr__(self, "_keyed", hmac.new(self.key, digestmod="sha256"))

    def __repr__(self) -> str:  # never print key material
        return "BlindIndex(...)"

    def keyed_hash(self, kind: str, value: str) -> str:
        """HMAC-SHA256 (hex) of ``kind:value``; ``kind`` keeps gfe ids and emails apart."""
        mac = self._keyed.copy()
        mac.update(f"{kind}:{value}".encode())
        return mac.hexdigest()

    def email_index(self, email: str) -> str:
        """The blind index of an email: equal for equal emails (case and spaces aside)."""
        return self.keyed_hash("email", normalize_email(email))

    def gfe_marker(self, gfe_id: str) -> str:
        return self.keyed_hash("gfe_id", gfe_id)


@dataclass(frozen=True)
class Keyring:
    """Encryption keys (newest first) and the blind index; the holder of key material."""

    keys: tuple[tuple[str, bytes], ...]
    index: BlindIndex
    _ciphers: dict[str, AESGCM] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.keys:
            raise PhiKeyError("no encryption key")
        # One cipher object per key: building AESGCM costs more than sealing a field.
        object.__setattr__(self, "_ciphers", {kid: AESGCM(key) for kid, key in self.keys})

    def __repr__(self) -> str:  # never print key material
        return f"Keyring(key_ids={[k for k, _ in self.keys]})"

    @property
    def current_id(self) -> str:
        return self.keys[0][0]

    @property
    def current_prefix(self) -> str:
        """What every ciphertext sealed with the newest key starts with."""
        return f"{VERSION}:{self.current_id}:"

    def encrypt(self, plaintext: str, context: str) -> str:
        key_id = self.keys[0][0]
        nonce = _NONCES.take()
        sealed = self._ciphers[key_id].encrypt(nonce, plaintext.encode(), context.encode())
        return f"{VERSION}:{key_id}:{_b64encode(nonce + sealed)}"

    def decrypt(self, token: str, context: str) -> str:
        version, key_id, body = split_token(token)
        if version != VERSION:
            raise PhiDecryptError("not a phi1 ciphertext")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise PhiDecryptError(f"key id {key_id} is not in PHI_ENCRYPTION_KEYS")
        try:
            raw = _b64decode(body)
            opened = cipher.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode())
        except (InvalidTag, ValueError, binascii.Error):
            raise PhiDecryptError("ciphertext does not open (wrong context or damaged)") from None
        return opened.decode()

    def email_index(self, email: str) -> str:
        return self.index.email_index(email)

    def gfe_marker(self, gfe_id: str) -> str:
        return self.index.gfe_marker(gfe_id)


def split_token(token: str) -> tuple[str, str, str]:
    """(version, key id, body) of a ciphertext; raises PhiDecryptError for anything else."""
    parts = token.split(":", 2)
    if len(parts) != 3:
        raise PhiDecryptError("not a phi ciphertext")
    return parts[0], parts[1], parts[2]


def is_ciphertext(value: object) -> bool:
    return isinstance(value, str) and value.startswith(f"{VERSION}:")


def keyring_from(keys_text: str, index_key_text: str) -> Keyring:
    """A keyring from the two settings' texts (tests and tools; services use PhiSettings)."""
    return Keyring(parse_keys(keys_text), BlindIndex(parse_key(index_key_text, "index key")))
