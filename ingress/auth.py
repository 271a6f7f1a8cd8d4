"""Steps 1, 2 and 5 of the contract: IP allowlist, shared secret, Standard Webhooks HMAC.

Plain functions over headers and bytes, so each unit-tests without a server.
Secrets are compared in constant time and never logged.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
from collections.abc import Mapping, Sequence

from pydantic import SecretStr

from ingress.settings import Network


def client_address(
    peer: str | None, forwarded_for: str | None, trusted_proxies: Sequence[Network]
) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The real client: walk ``X-Forwarded-For`` right to left while hops are trusted proxies.

    A client that is not itself a trusted proxy cannot spoof its address: its own
    header is ignored.
    """
    try:
        address = ipaddress.ip_address(peer) if peer else None
    except ValueError:
        return None
    if address is None or not forwarded_for:
        return address
    hops = [hop.strip() for hop in forwarded_for.split(",") if hop.strip()]
    while address is not None and hops and any(address in net for net in trusted_proxies):
        try:
            address = ipaddress.ip_address(hops.pop())
        except ValueError:
            return None
    return address


def address_allowed(
    address: ipaddress.IPv4Address | ipaddress.IPv6Address | None,
    allowed: Sequence[Network],
) -> bool:
    if not allowed:
        return True
    return address is not None and any(address in net for net in allowed)


def presented_secret(authorization: str | None, query_token: str | None) -> str | None:
    """The secret as basic-auth password, ``Bearer`` token or ``token`` query parameter."""
    if authorization:
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "bearer":
            return credentials.strip()
        if scheme.lower() == "basic":
            try:
                decoded = base64.b64decode(credentials.strip(), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                return None
            return decoded.partition(":")[2]
    return query_token


def secret_matches(presented: str | None, expected: SecretStr) -> bool:
    if presented is None:
        return False
    return hmac.compare_digest(
        presented.encode("utf-8", "surrogatepass"), expected.get_secret_value().encode()
    )


def _hmac_key(secret: str) -> bytes:
    """Standard Webhooks secrets are ``whsec_`` + base64; anything else is used as bytes."""
    if secret.startswith("whsec_"):
        try:
            return base64.b64decode(secret.removeprefix("whsec_"), validate=True)
        except binascii.Error:
            pass
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """A ``v1,<base64>`` signature as the Standard Webhooks spec defines it."""
    mac = hmac.new(_hmac_key(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


def verify_signature(
    headers: Mapping[str, str],
    body: bytes,
    secrets: Sequence[SecretStr],
    tolerance_s: float,
    now_s: float,
) -> str | None:
    """None when a ``webhook-signature`` entry matches any secret, else the reason."""
    msg_id = headers.get("webhook-id")
    stamp = headers.get("webhook-timestamp")
    signatures = headers.get("webhook-signature")
    if not (msg_id and stamp and signatures):
        return "missing webhook-id, webhook-timestamp or webhook-signature header"
    try:
        timestamp = int(stamp)
    except ValueError:
        return "webhook-timestamp is not an integer"
    if abs(now_s - timestamp) > tolerance_s:
        return "webhook-timestamp is outside the tolerance"
    presented = signatures.split()
    for secret in secrets:
        expected = sign(secret.get_secret_value(), msg_id, timestamp, body)
        if any(hmac.compare_digest(expected.encode(), p.encode()) for p in presented):
            return None
    return "no signature matches"
