"""The sink protocol and the errors a sink raises, named by what the caller does next.

* :class:`RetryableError` — transient (connection lost, timeout, serialization
  failure, SMTP unreachable or 4xx): pause, back off, write the same batch again.
* :class:`InvalidBatch` — something in the batch can never be written (a row
  Postgres rejects, an SMTP 5xx for an address): split the batch to isolate it,
  dead-letter that record, write the rest.

Error texts must not quote values: they end up in logs and DLQ headers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from events.envelope import Record


class SinkError(Exception):
    """Base of the classified sink errors; ``str()`` is safe to log (no patient data)."""


class RetryableError(SinkError):
    """Try the same batch again after a backoff; nothing is wrong with the data."""


class InvalidBatch(SinkError):
    """Some record in the batch can never be written; isolate it and dead-letter it."""


class Sink(Protocol):
    """What a sink runner drives: ``start``, ``stop`` and ``write(batch)``.

    ``write`` either commits the whole batch or raises a :class:`SinkError`
    subclass; it must be idempotent, since a batch can be written again after a
    crash or a retry.
    """

    name: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def write(self, batch: Sequence[Record]) -> None: ...
