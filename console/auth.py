"""Sessions, CSRF tokens and roles (pure; no I/O; the login throttle is console.throttle).

A session is a signed, timestamped cookie value (itsdangerous) holding the
user name, a random nonce and the user's session generation (a short hash of
their password hash and ``session_epoch``); it expires after
``CONSOLE_SESSION_TTL`` and is checked against the users table on every
request, so removing a user, changing their password or logging out ends
their sessions. The CSRF token of a session is an HMAC of its nonce and the
time it was made: every form carries it, every POST must echo it, and it
expires after ``csrf_ttl_s`` (behind a trusted proxy the nonce is fixed per
user, so the expiry is what keeps a leaked token from working forever).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

ROLES = ("viewer", "operator", "phi", "admin")
"""Each role includes the ones before it."""


def allows(role: str, needed: str) -> bool:
    """True when ``role`` is ``needed`` or above it on the ladder."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


@dataclass(frozen=True, slots=True)
class Session:
    username: str
    nonce: str
    generation: str = ""


def generation(password_hash: str, epoch: int) -> str:
    """Changes when the password or ``session_epoch`` does: sessions of an older one are void."""
    return hashlib.sha256(f"{epoch}:{password_hash}".encode()).hexdigest()[:16]


def same(a: str, b: str) -> bool:
    """Constant-time comparison that accepts any text (``compare_digest`` refuses non-ASCII str)."""
    return hmac.compare_digest(a.encode(), b.encode())


class Sessions:
    """Issue and read session cookie values, and the CSRF token that goes with each."""

    def __init__(self, secret: str, ttl_s: float, csrf_ttl_s: float = 3600.0) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="spakinect-console-session")
        self._csrf_key = hashlib.sha256(f"csrf:{secret}".encode()).digest()
        self.ttl_s = ttl_s
        self.csrf_ttl_s = csrf_ttl_s

    def issue(self, username: str, generation: str = "") -> str:
        return self._serializer.dumps(
            {"u": username, "n": secrets.token_urlsafe(16), "g": generation}
        )

    def read(self, value: str | None) -> Session | None:
        """The session, or None when absent, forged, malformed or older than the TTL."""
        if not value:
            return None
        try:
            data = self._serializer.loads(value, max_age=max(int(self.ttl_s), 1))
        except (SignatureExpired, BadSignature):
            return None
        if not isinstance(data, dict) or not isinstance(data.get("u"), str):
            return None
        return Session(data["u"], str(data.get("n", "")), str(data.get("g", "")))

    def _mac(self, nonce: str, made: int) -> str:
        return hmac.new(self._csrf_key, f"{made}:{nonce}".encode(), hashlib.sha256).hexdigest()

    def csrf_token(self, session: Session, now: float | None = None) -> str:
        made = int(time.time() if now is None else now)
        return f"{made}.{self._mac(session.nonce, made)}"

    def csrf_ok(self, session: Session, token: str | None, now: float | None = None) -> bool:
        """True for a token of this session made less than ``csrf_ttl_s`` ago."""
        made, _, mac = str(token or "").partition(".")
        if not made.isascii() or not made.isdigit():
            return False
        age = (time.time() if now is None else now) - int(made)
        fresh = -60 <= age < self.csrf_ttl_s  # a minute of clock skew between replicas
        return fresh and same(self._mac(session.nonce, int(made)), mac)
