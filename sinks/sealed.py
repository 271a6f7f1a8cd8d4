"""Open a batch's sealed envelopes for a sink, with the outcomes named as the sink protocol does.

A sink that needs patient fields (the Postgres writer, the emails) opens its
batch first (docs/patient-data-on-kafka.md):

* a destroyed key: the patient was forgotten; the record comes back with its
  sealed paths null and is listed in ``forgotten`` (the writer stores it
  redacted, the email stage skips it);
* a key not seen yet: :class:`~sinks.base.RetryableError` (the ingress may
  have just minted it; the reader refreshed once already), and past the
  reader's grace :class:`~sinks.base.InvalidBatch`: dead-lettered sealed;
* a damaged field, a key record that does not unwrap, or no master key:
  :class:`~sinks.base.InvalidBatch`, dead-lettered sealed, nothing lost.

The records given to the dead letter are the sink's input, so the DLQ (and
the retry topics) keep the sealed envelope as it came. Error texts name
statuses, never a value or a key.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from aiokafka.errors import KafkaError

from events.envelope import ENVELOPE_VERSION, Envelope, Record
from sinks.base import InvalidBatch, RetryableError
from spakinect_pipeline.config import ConfigError
from spakinect_pipeline.phi.opening import Status
from spakinect_pipeline.phi.sealed_reader import Verdict


class Opener(Protocol):
    """What opens one envelope (:class:`~spakinect_pipeline.phi.sealed_reader.SealedReader`)."""

    async def open(self, envelope: Envelope) -> Verdict: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class OpenedBatch:
    """The batch with every sealed path opened; ``forgotten``: positions of forgotten records."""

    records: list[Record]
    forgotten: frozenset[int]


async def open_batch(opener: Opener, batch: Sequence[Record]) -> OpenedBatch:
    """Every record opened, or the sink error that says what to do with the batch."""
    records: list[Record] = []
    forgotten: set[int] = set()
    for position, record in enumerate(batch):
        try:
            verdict = await opener.open(record.envelope)
        except ConfigError as exc:
            raise InvalidBatch(str(exc)) from None
        except (KafkaError, OSError, TimeoutError) as exc:  # the key topic unreadable
            raise RetryableError(f"key topic unreadable ({type(exc).__name__})") from None
        opening = verdict.opening
        if opening.status is Status.UNKNOWN:
            if verdict.expired:
                raise InvalidBatch("data key unknown after the grace (not on the key topic)")
            raise RetryableError("data key not on the key topic yet")
        if opening.status is Status.DAMAGED:
            raise InvalidBatch(opening.reason or "sealed envelope does not open")
        if opening.status is Status.PLAIN:
            records.append(record)
            continue
        if opening.status is Status.FORGOTTEN:
            forgotten.add(position)
        envelope = record.envelope.model_copy(
            update={"payload": opening.payload, "sealed": (), "envelope_version": ENVELOPE_VERSION}
        )
        records.append(Record(envelope, record.source))
    return OpenedBatch(records, frozenset(forgotten))
