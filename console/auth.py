"""Sessions, CSRF tokens, roles and the login rate limit (pure; no I/O).

A session is a signed, timestamped cookie value (itsdangerous) holding the
user name and a random nonce; it expires after ``CONSOLE_SESSION_TTL`` and
is checked against the users table on every request, so removing a user
ends their sessions. The CSRF token of a session is an HMAC of its nonce:
every form carries it and every POST must echo it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import defaultdict, deque
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


class Sessions:
    """Issue and read session cookie values, and the CSRF token that goes with each."""

    def __init__(self, secret: str, ttl_s: float) -> None:
        self._serializer = URLSafeTimedSerializer(secret, salt="spakinect-console-session")
        self._csrf_key = hashlib.sha256(f"csrf:{secret}".encode()).digest()
        self.ttl_s = ttl_s

    def issue(self, username: str) -> str:
        return self._serializer.dumps({"u": username, "n": secrets.token_urlsafe(16)})

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
        return Session(data["u"], str(data.get("n", "")))

    def csrf_token(self, session: Session) -> str:
        return hmac.new(self._csrf_key, session.nonce.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, session: Session, token: str | None) -> bool:
        return bool(token) and hmac.compare_digest(self.csrf_token(session), str(token))


class LoginLimiter:
    """At most ``attempts`` failed logins per client address and per user name in ``window_s``.

    Kept in memory: each console replica limits on its own, which still
    bounds a guesser to ``attempts × replicas`` tries per window.
    """

    def __init__(self, attempts: int, window_s: float) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures[key]
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        return failures

    def blocked(self, client: str, username: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        keys = (f"addr:{client}", f"user:{username.lower()}")
        return any(len(self._recent(k, now)) >= self.attempts for k in keys)

    def failed(self, client: str, username: str, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        for key in (f"addr:{client}", f"user:{username.lower()}"):
            self._recent(key, now).append(now)
