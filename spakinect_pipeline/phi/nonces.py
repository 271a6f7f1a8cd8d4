"""Random AES-GCM nonces drawn from the OS in bulk (pure but for ``os.urandom``).

Each ``os.urandom`` call is a system call, and on a busy writer one per sealed
field cost more than the AES-GCM sealing itself. A :class:`NoncePool` draws
many nonces' worth of bytes at once and hands each nonce out exactly once.
The nonces are as random as before (the same CSPRNG, the same 12 bytes each);
they are not secret (every ciphertext carries its own), they only must never
repeat under one key, hence the two rules below.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable

DRAW = 256
"""Nonces per ``os.urandom`` call."""


class NoncePool:
    """Fresh random nonces of ``size`` bytes, each handed out once.

    ``deque.popleft`` is atomic, so two threads never get the same nonce; a
    forked child starts with an empty pool (``os.register_at_fork``), so a
    child and its parent never share the nonces the parent had drawn.
    """

    def __init__(
        self, size: int, draw: int = DRAW, urandom: Callable[[int], bytes] = os.urandom
    ) -> None:
        self.size = size
        self.draw = draw
        self._urandom = urandom
        self._pool: deque[bytes] = deque()
        os.register_at_fork(after_in_child=self._pool.clear)

    def take(self) -> bytes:
        while True:
            try:
                return self._pool.popleft()
            except IndexError:
                self._refill()

    def _refill(self) -> None:
        raw = self._urandom(self.size * self.draw)
        self._pool.extend(raw[i : i + self.size] for i in range(0, len(raw), self.size))
