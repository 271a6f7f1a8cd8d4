"""Dead-letter publishing: the original message plus headers that say what failed where.

Error texts are class names and codes, never exception messages, which can
echo patient data (a database error quoting a value, for example).

:class:`DlqLimit` stops a stage that dead-letters everything it reads (a bad
deploy, a sink that rejects every row): past a run of consecutive
dead-lettered messages the stage crashes instead of emptying its topics into
the DLQ, as getsentry/arroyo's ``DlqLimit`` does.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from events.messages import SourceMessage, dlq_headers
from spakinect_pipeline.publisher import Publisher
from streams.delivery import Backoff, until_acked
from streams.settings import DEFAULT_DLQ_LIMIT
from streams.source import Position, position

log = logging.getLogger(__name__)


class DlqLimitExceeded(Exception):
    """The stage dead-lettered too many events in a row; it stops instead of going on."""


@dataclass
class DlqLimit:
    """Counts source messages dead-lettered in a row, in source order.

    Counted once a batch is done, since a batch's dead letters are not sent
    in source order (undecodable ones first, then the handler's): each source
    message counts once (however many dead letters it made, one per email
    kind for example), and an event that went through breaks the run. Past
    ``max_consecutive`` :meth:`settle` raises before the batch is acked, so a
    crashed stage repeats that batch; the dead letters it sends past the
    limit are bounded by one batch.
    """

    max_consecutive: int = DEFAULT_DLQ_LIMIT
    consecutive: int = 0

    def settle(self, dead: Sequence[bool]) -> None:
        """Count one batch's outcomes (True: dead-lettered), in source order."""
        for lettered in dead:
            self.consecutive = self.consecutive + 1 if lettered else 0
            if self.consecutive > self.max_consecutive:
                raise DlqLimitExceeded(
                    f"{self.consecutive} events dead-lettered in a row; stopping the stage"
                )


class DeadLetters:
    """Sends failed messages to the DLQ, retrying until Kafka takes them (never drops)."""

    def __init__(
        self, publisher: Publisher, topic: str, stage: str, limit: DlqLimit | None = None
    ) -> None:
        self.publisher = publisher
        self.topic = topic
        self.stage = stage
        self.limit = limit or DlqLimit()
        self.backoff = Backoff(initial=0.5, maximum=30)
        self.sent = 0
        self._batch: set[Position] = set()  # the messages of this batch dead-lettered so far

    def begin_batch(self) -> None:
        self._batch.clear()

    def holds(self, source: SourceMessage) -> bool:
        """Whether ``source`` was dead-lettered in this batch (so not to be handled again)."""
        return position(source) in self._batch

    def settle(self, sources: Sequence[SourceMessage]) -> None:
        """The batch is done: count its dead letters against the limit (may raise)."""
        self.limit.settle([position(s) in self._batch for s in sources])

    async def send(
        self, source: SourceMessage, *, error: str, error_type: str, attempts: int = 1
    ) -> None:
        """Dead-letter ``source``, retrying until Kafka acks it."""
        headers = dlq_headers(
            source, error=error, error_type=error_type, stage=self.stage, attempts=attempts
        )

        async def write() -> None:
            await self.publisher.publish(
                self.topic, source.value or b"", key=source.key, headers=headers, timeout=10
            )

        await until_acked(write, self.backoff, "DLQ write")
        self.sent += 1
        self._batch.add(position(source))
        log.warning(
            "message dead-lettered",
            extra={
                "stage": self.stage,
                "error_type": error_type,
                "source_topic": source.topic,
                "source_partition": source.partition,
                "source_offset": source.offset,
            },
        )
