from collections.abc import Sequence
from datetime import UTC, datetime

import pytest

from events.envelope import Envelope, Record
from events.messages import SourceMessage, dlq_headers
from sinks.base import InvalidBatch, RetryableError
from streams.delivery import Backoff, DeliveryStats, deliver


def record(i: int) -> Record:
    envelope = Envelope(
        event_id=f"e{i}",
        event="visit.completed",
        received_at=datetime.now(UTC),
        payload={"timestamp": i},
    )
    return Record(envelope, SourceMessage("t", 0, i, b"k", b"v", []))


class FakeSink:
    name = "fake"

    def __init__(self, poison: set[str], failures_before_success: int = 0) -> None:
        self.poison = poison
        self.failures = failures_before_success
        self.written: list[str] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def write(self, batch: Sequence[Record]) -> None:
        if self.failures:
            self.failures -= 1
            raise RetryableError("connection lost")
        if any(r.envelope.event_id in self.poison for r in batch):
            raise InvalidBatch("check violation")
        self.written.extend(r.envelope.event_id for r in batch)


async def no_sleep(_: float) -> None:
    return None


async def test_one_poisoned_record_in_100_is_isolated():
    sink, dead = FakeSink({"e42"}), []

    async def dead_letter(rec, exc, attempts):
        dead.append(rec.envelope.event_id)

    stats = DeliveryStats()
    await deliver(
        sink, [record(i) for i in range(100)], dead_letter, Backoff(sleep=no_sleep), stats
    )
    assert dead == ["e42"]
    assert len(sink.written) == 99
    assert "e42" not in sink.written
    assert (stats.written, stats.dead_lettered) == (99, 1)


async def test_retryable_errors_retry_the_same_batch_until_it_is_written():
    sink = FakeSink(set(), failures_before_success=5)
    stats = DeliveryStats()
    await deliver(sink, [record(1), record(2)], pytest.fail, Backoff(sleep=no_sleep), stats)
    assert sink.written == ["e1", "e2"]
    assert stats.retries == 5


def test_backoff_doubles_to_its_cap_and_draws_each_delay_from_the_upper_half():
    backoff = Backoff(initial=0.2, maximum=5)
    delays = [backoff.next_delay() for _ in range(40)]
    ceilings = [min(5.0, 0.2 * 2**k) for k in range(40)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    at_cap = delays[10:]  # 0.2 * 2**5 > 5: capped from the sixth delay on
    assert len(set(at_cap)) > 1  # jittered: not every delay is the cap
    assert min(at_cap) < 4.5
    assert max(at_cap) > 3.0
    backoff.reset()
    assert 0.1 <= backoff.next_delay() <= 0.2  # a success starts over from the initial delay


def test_dlq_headers_carry_the_contract_fields():
    source = SourceMessage("spakinect.visits", 3, 17, b"g1", b"{}", [("event", b"x")])
    headers = dict(
        dlq_headers(source, error="bad", error_type="InvalidBatch", stage="postgres", attempts=2)
    )
    assert headers == {
        "event": b"x",
        "error": b"bad",
        "error_type": b"InvalidBatch",
        "stage": b"postgres",
        "source_topic": b"spakinect.visits",
        "source_partition": b"3",
        "source_offset": b"17",
        "attempts": b"2",
    }


QUOTED = "invalid input value: 'Jane Doe <jane@example.com>'"


async def test_an_unclassified_error_is_retried_and_logged_without_its_text(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Quoting(FakeSink):
        async def write(self, batch: Sequence[Record]) -> None:
            if not self.written and self.failures:
                self.failures -= 1
                raise ValueError(QUOTED)  # (the stack shows this line, not the text)
            self.written.extend(r.envelope.event_id for r in batch)

    sink, stats = Quoting(set(), failures_before_success=1), DeliveryStats()

    async def dead_letter(rec: Record, exc: BaseException, attempts: int) -> None:
        raise AssertionError("an unclassified error is retried, not dead-lettered")

    await deliver(sink, [record(1)], dead_letter, Backoff(sleep=no_sleep), stats)
    assert (sink.written, stats.retries) == (["e1"], 1)
    (logged,) = [r for r in caplog.records if "unclassified" in r.getMessage()]
    assert logged.__dict__["error_type"] == "ValueError"
    assert "write" in logged.__dict__["stack"]
    assert logged.exc_info is None
    assert "Jane" not in str([(r.getMessage(), r.__dict__, r.exc_info) for r in caplog.records])
