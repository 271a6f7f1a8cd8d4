"""The login throttle (pure; no I/O): slow guessing down without locking anybody out.

Following OWASP's authentication guidance, failures are counted per user name
*and* client address, and what happens next depends on who has been failing:

- **This address guessing this user** (``attempts`` failures in ``window_s``):
  its next try waits ``backoff_s``, doubling with each further failure (up to
  ``window_s``); until then it is refused (429) without checking the password.
- **This address guessing many users** (``4 × attempts`` failures in the
  window, whatever the names): the same back-off for the whole address.
- **This user guessed from anywhere** (``attempts`` failures over all
  addresses): every try at the name is *slowed*, right password included, by
  ``0.5 s`` doubling per further failure up to ``max_delay_s``; it is never
  refused, so an address that has not been guessing still gets in.

A right password clears its own address's failures for that user. Kept in
memory: each console replica throttles on its own.
"""

from __future__ import annotations

from collections import defaultdict, deque
from dataclasses import dataclass

ADDRESS_FACTOR = 4
"""An address may fail this many times ``attempts`` over all user names before backing off."""
FIRST_DELAY_S = 0.5
MAX_KEYS = 50_000
"""Keys kept before expired ones are swept (a guesser inventing names cannot grow it forever)."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """``refuse_s`` > 0: refuse now, and for that long; else check after ``delay_s``."""

    refuse_s: float = 0.0
    delay_s: float = 0.0


class LoginThrottle:
    def __init__(
        self, attempts: int, window_s: float, backoff_s: float = 30.0, max_delay_s: float = 5.0
    ) -> None:
        self.attempts = attempts
        self.window_s = window_s
        self.backoff_s = backoff_s
        self.max_delay_s = max_delay_s
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    @staticmethod
    def _keys(client: str, username: str) -> tuple[str, str, str]:
        name = username.lower()
        return f"pair:{client}|{name}", f"addr:{client}", f"user:{name}"

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures[key]
        while failures and failures[0] <= now - self.window_s:
            failures.popleft()
        return failures

    def _backoff_left(self, failures: deque[float], limit: int, now: float) -> float:
        if len(failures) < limit:
            return 0.0
        wait = min(self.backoff_s * 2.0 ** (len(failures) - limit), self.window_s)
        return max(failures[-1] + wait - now, 0.0)

    def judge(self, client: str, username: str, now: float) -> Verdict:
        """What to do with an attempt at ``username`` from ``client`` now."""
        pair, addr, user = (self._recent(k, now) for k in self._keys(client, username))
        refuse = max(
            self._backoff_left(pair, self.attempts, now),
            self._backoff_left(addr, self.attempts * ADDRESS_FACTOR, now),
        )
        if refuse > 0:
            return Verdict(refuse_s=refuse)
        over = len(user) - self.attempts
        delay = 0.0 if over < 0 else min(FIRST_DELAY_S * 2.0**over, self.max_delay_s)
        return Verdict(delay_s=delay)

    def failed(self, client: str, username: str, now: float) -> float:
        """Count an attempt as failed (returns its stamp).

        The login counts every attempt *before* checking the password, so
        parallel guesses cannot all pass :meth:`judge` while the first is
        still being verified; a right password then takes its count back.
        """
        if len(self._failures) > MAX_KEYS:
            self._sweep(now)
        for key in self._keys(client, username):
            self._recent(key, now).append(now)
        return now

    def succeeded(self, client: str, username: str) -> None:
        """A right password: this address's failures at the name are forgiven, its own
        count included (other addresses' failures stand)."""
        pair, *others = self._keys(client, username)
        for stamp in self._failures.pop(pair, ()):
            for key in others:
                failures = self._failures.get(key)
                if failures is not None and stamp in failures:
                    failures.remove(stamp)

    def _sweep(self, now: float) -> None:
        for key in [k for k, v in self._failures.items() if not v or v[-1] <= now - self.window_s]:
            del self._failures[key]
