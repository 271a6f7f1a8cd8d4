"""The stage runner's work on a batch (streams.handler.process), without Kafka or Faust.

Handlers run against the in-memory publisher and real Faust memory stores for their tables;
the integration tests run the same code in real workers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import orjson
import pytest

from events.envelope import Disposition, Record, decode_envelope, encode_envelope
from events.messages import SourceMessage
from events.registry import VISIT_COMPLETED
from events.samples import SAMPLES, sample_visit
from events.topics import SINK_NAMES, Topics
from sinks.base import InvalidBatch
from streams.dedupe import DedupeHandler
from streams.dlq import DeadLetters, DlqLimit, DlqLimitExceeded
from streams.email_stage import EmailHandler
from streams.handler import Batch, Handler, Shape, Tools, process
from streams.spans import NO_SPANS
from streams.stages import STAGE_NAMES
from tests.helpers import RecordingPublisher, memory_table

TOPICS = Topics()


def message(
    body: dict[str, Any],
    offset: int,
    topic: str = TOPICS.raw(VISIT_COMPLETED),
    disposition: Disposition | None = None,
) -> SourceMessage:
    entity = body["data"].get("gfe_id") or body["data"]["treatment_id"]
    value = encode_envelope(
        event_id=f"{body['event']}:{entity}:{body['timestamp']}",
        event=body["event"],
        received_at=datetime(2026, 11, 29, tzinfo=UTC),
        payload=body,
        disposition=disposition,
    )
    return SourceMessage(topic, 0, offset, entity.encode(), value, [("event", b"x")])


def tools_for(stage: str, publisher: RecordingPublisher, limit: DlqLimit | None = None) -> Tools:
    dlq = DeadLetters(publisher, TOPICS.dlq, stage, limit)
    return Tools(stage, publisher, dlq)


def dead_letters(publisher: RecordingPublisher) -> list[dict[str, str]]:
    return [
        {k: v.decode() for k, v in headers}
        for topic, _key, _value, headers in publisher.messages
        if topic == TOPICS.dlq
    ]


def test_the_registry_names_dedupe_then_every_sink() -> None:
    assert ("dedupe", *SINK_NAMES) == STAGE_NAMES


async def test_dedupe_publishes_each_distinct_event_once_then_records_it(tmp_path: Path) -> None:
    publisher = RecordingPublisher(failures=2)  # Kafka refuses twice: the stage waits, loses none
    table = memory_table(tmp_path)
    handler = DedupeHandler(table, TOPICS, window_s=3600)
    tools = tools_for("dedupe", publisher)
    tools.publish_backoff.sleep = no_sleep
    visit = sample_visit("gfe_1")
    await process(handler, [message(visit, 0), message(visit, 1)], tools)
    await process(handler, [message(visit, 2)], tools)

    clean, changelog = publisher.messages
    topic, key, value, headers = clean
    assert (topic, key) == (TOPICS.clean(VISIT_COMPLETED), b"gfe_1")
    assert decode_envelope(value).disposition == "apply"
    assert ("disposition", b"apply") in headers
    assert (changelog[0], changelog[1]) == (table.topic, b'"visit.completed:gfe_1"')
    assert [key for key, _ in table.items()] == ["visit.completed:gfe_1"]
    assert handler.counts()["published_apply"] == 1
    assert handler.counts()["duplicates"] == 2


async def test_dedupe_records_nothing_before_the_clean_topic_acked(tmp_path: Path) -> None:
    table = memory_table(tmp_path)
    calls: list[list[str]] = []

    class Watching(RecordingPublisher):
        async def publish_many(self, messages: Any, *, timeout: float) -> Any:
            assert not dict(table.items()), "marked as seen before the changelog acked"
            calls.append([m.topic for m in messages])
            return await super().publish_many(messages, timeout=timeout)

    publisher = Watching()
    handler = DedupeHandler(table, TOPICS, window_s=3600)
    await process(handler, [message(SAMPLES["visit.completed"], 0)], tools_for("dedupe", publisher))
    # The clean topic first, acked; then the changelog, acked; then the local store.
    assert calls == [[TOPICS.clean(VISIT_COMPLETED)], [table.topic]]
    assert dict(table.items())


async def test_dedupe_tombstones_expired_entries_with_the_batch_and_reads_them_as_absent(
    tmp_path: Path,
) -> None:
    publisher = RecordingPublisher()
    table = memory_table(tmp_path)
    handler = DedupeHandler(table, TOPICS, window_s=0.001)
    tools = tools_for("dedupe", publisher)
    first, second = sample_visit("gfe_1"), sample_visit("gfe_2")
    await process(handler, [message(first, 0)], tools)
    await asyncio.sleep(0.01)  # past the window
    await process(handler, [message(second, 1), message(first, 2)], tools)

    # gfe_1's old entry was swept before the read: its retry passes again (window over).
    assert [m[0] for m in publisher.messages if m[0] == TOPICS.clean(VISIT_COMPLETED)] == [
        TOPICS.clean(VISIT_COMPLETED)
    ] * 3
    keys = sorted(key for key, _ in table.items())
    assert keys == ["visit.completed:gfe_1", "visit.completed:gfe_2"]
    assert handler.counts()["duplicates"] == 0
    await asyncio.sleep(0.01)
    await process(handler, [message(sample_visit("gfe_3"), 3)], tools)
    assert [key for key, _ in table.items()] == ["visit.completed:gfe_3"]
    tombstones = [m for m in publisher.messages if m[0] == table.topic and m[2] is None]
    assert sorted(m[1] for m in tombstones) == [
        b'"visit.completed:gfe_1"',
        b'"visit.completed:gfe_2"',
    ]
    assert handler.counts()["expired"] == 2


async def test_a_failed_dedupe_batch_puts_what_its_sweep_took_back_in_the_index(
    tmp_path: Path,
) -> None:
    """A sweep takes keys out of the index before their tombstones are written; a batch
    that fails after it must not leave those entries unindexed (never expiring)."""

    class Exploding(RecordingPublisher):
        async def publish_many(self, messages: Any, *, timeout: float) -> Any:
            raise RuntimeError("not a PublishFailed")

    table = memory_table(tmp_path)
    handler = DedupeHandler(table, TOPICS, window_s=0.001)
    first = message(sample_visit("gfe_1"), 0)
    await process(handler, [first], tools_for("dedupe", RecordingPublisher()))
    assert len(handler.index) == 1
    await asyncio.sleep(0.01)  # gfe_1's entry is now past the window: the next batch sweeps it
    source = message(sample_visit("gfe_2"), 1)
    batch = Batch(
        [Record(decode_envelope(source.value), source)],
        tools_for("dedupe", Exploding()),
        NO_SPANS,
    )
    with pytest.raises(RuntimeError):
        await handler.handle(batch)
    assert [key for key, _ in table.items()] == ["visit.completed:gfe_1"]  # not tombstoned
    assert handler.index.expired(0, now_ms=int(time.time() * 1000)) == ["visit.completed:gfe_1"]


async def test_an_undecodable_message_is_dead_lettered_before_the_handler_sees_it() -> None:
    publisher = RecordingPublisher()
    seen: list[Record] = []

    class Keeping(Handler):
        name = "postgres"
        shape = Shape(10, 0)

        async def handle(self, batch: Batch) -> None:
            seen.extend(batch.records)

    good = message(SAMPLES["visit.completed"], 1, TOPICS.clean(VISIT_COMPLETED))
    bad = SourceMessage(TOPICS.clean(VISIT_COMPLETED), 0, 0, b"k", b"not json", [])
    await process(Keeping(), [bad, good], tools_for("postgres", publisher))
    assert [r.source for r in seen] == [good]
    (letter,) = dead_letters(publisher)
    assert letter["error_type"] == "EnvelopeInvalid"
    assert (letter["stage"], letter["source_offset"]) == ("postgres", "0")


class Failing(Handler):
    """Raises for any batch holding the entity ``gfe_bad``; rejects ``gfe_invalid``."""

    name = "postgres"
    shape = Shape(10, 0)

    def __init__(self) -> None:
        self.handled: list[str] = []

    async def handle(self, batch: Batch) -> None:
        ids = [r.envelope.entity_id for r in batch.records]
        if "gfe_bad" in ids:  # an error quoting the payload: its text must reach no log or header
            raise RuntimeError(str(batch.records[0].envelope.payload["data"]["patient_details"]))
        for record in batch.records:
            if record.envelope.entity_id == "gfe_invalid":
                await batch.reject(record, InvalidBatch("row rejected (CheckViolation)"), 3)
            else:
                self.handled.append(record.envelope.entity_id)


async def test_a_raising_batch_is_retried_one_by_one_and_only_the_culprit_dead_lettered(
    caplog: pytest.LogCaptureFixture,
) -> None:
    publisher = RecordingPublisher()
    handler = Isolating()
    sources = [message(sample_visit(g), i) for i, g in enumerate(["gfe_a", "gfe_bad", "gfe_b"])]
    await process(handler, sources, tools_for("postgres", publisher))
    assert handler.handled == ["gfe_a", "gfe_b"]
    (letter,) = dead_letters(publisher)
    assert letter["error"] == "unexpected error in the postgres stage"
    assert letter["error_type"] == "RuntimeError"
    assert letter["source_offset"] == "1"
    assert "Jane" not in str([headers for *_, headers in publisher.messages])
    logged = [(r.getMessage(), r.__dict__.get("stack"), r.exc_info) for r in caplog.records]
    assert "Jane" not in str(logged)
    assert "RuntimeError" in str(logged)


async def test_a_record_the_handler_rejects_is_dead_lettered_with_its_error() -> None:
    publisher = RecordingPublisher()
    sources = [message(sample_visit("gfe_invalid"), 7)]
    await process(Failing(), sources, tools_for("postgres", publisher))
    (letter,) = dead_letters(publisher)
    assert (letter["error_type"], letter["attempts"]) == ("InvalidBatch", "3")
    assert letter["error"] == "row rejected (CheckViolation)"


async def test_the_dlq_limit_stops_a_stage_that_dead_letters_everything() -> None:
    publisher = RecordingPublisher()
    tools = tools_for("postgres", publisher, DlqLimit(max_consecutive=3))
    bad = [message(sample_visit("gfe_invalid", timestamp=t), t) for t in range(5)]
    await process(Failing(), bad[:2], tools)
    await process(Failing(), [message(sample_visit("gfe_ok"), 9)], tools)  # breaks the run
    await process(Failing(), bad[2:5], tools)
    assert len(dead_letters(publisher)) == 5
    with pytest.raises(DlqLimitExceeded):  # raised before the runner acks that batch
        await process(Failing(), [message(sample_visit("gfe_invalid", timestamp=99), 99)], tools)


class Mailbox:
    """A stand-in EmailSink: what it was asked to send, by kind."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.sent = 0

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def write(self, batch: Any) -> None:
        self.sent += len(batch)


class NoMarkers:
    async def forgotten(self, gfe_id: str | None, emails: Any) -> bool:
        return gfe_id == "gfe_forgotten"

    async def stop(self) -> None: ...


def sent_table(tmp_path: Path) -> Any:
    return memory_table(tmp_path, stage="email", name="sent")


def stored(table: Any) -> list[str]:
    return sorted(key for key, _ in table.items())


async def test_the_email_handler_sends_each_visit_once_and_skips_forgotten_patients(
    tmp_path: Path,
) -> None:
    publisher = RecordingPublisher()
    clinic = Mailbox("clinic")
    sent = sent_table(tmp_path)
    handler = EmailHandler({"clinic": clinic}, NoMarkers(), sent, 1.0)  # type: ignore[dict-item]
    tools = tools_for("email", publisher)
    applied = message(sample_visit("gfe_1"), 0, TOPICS.clean(VISIT_COMPLETED), Disposition.APPLY)
    forgotten = message(
        sample_visit("gfe_forgotten"), 1, TOPICS.clean(VISIT_COMPLETED), Disposition.APPLY
    )
    stale = message(sample_visit("gfe_2"), 2, TOPICS.clean(VISIT_COMPLETED), Disposition.STALE)
    await process(handler, [applied], tools)
    await process(handler, [applied], tools)
    await process(handler, [forgotten], tools)
    await process(handler, [stale], tools)
    assert clinic.sent == 1
    assert handler.counts()["already_sent"] == 1
    assert handler.counts()["forgotten"] == 1
    marked = [  # a forgotten visit is recorded as handled: a replay skips it too
        "visit.completed:gfe_1:1714675200000",
        "visit.completed:gfe_forgotten:1714675200000",
    ]
    assert stored(sent) == marked
    # each mark went to the changelog (acked) before the store; nothing else was published
    assert {topic for topic, *_ in publisher.messages} == {sent.topic}
    assert sorted(orjson.loads(key) for _, key, *_ in publisher.messages) == marked


async def no_sleep(delay: float) -> None:
    return None


class FakeStream:
    """The part of a Faust stream the runner uses: events, acks, the current event."""

    def __init__(self, messages: list[SourceMessage]) -> None:
        self.messages = messages
        self.acked: list[int] = []
        self.enable_acks = True

    async def events(self) -> AsyncIterator[Any]:
        for m in self.messages:
            yield SimpleNamespace(message=m)
        await asyncio.Event().wait()  # nothing more arrives

    async def ack(self, event: Any) -> None:
        self.acked.append(event.message.offset)


def crash_recording_runner(
    tmp_path: Path, handler: Handler, publisher: RecordingPublisher
) -> tuple[Any, list[BaseException]]:
    """A postgres-stage runner on the clean visits topic whose app records its crashes."""
    from spakinect_pipeline.config import KafkaSettings
    from streams.faust_app import create_faust_app
    from streams.runner import StageEnv, StageParts, StageRunner
    from streams.settings import StreamsSettings

    streams, kafka = StreamsSettings(state_dir=tmp_path, store="memory"), KafkaSettings()
    env = StageEnv(create_faust_app("postgres", streams, kafka), streams, kafka, TOPICS)
    topics = [TOPICS.clean(VISIT_COMPLETED)]
    runner = StageRunner(env, StageParts(handler, topics, topics), None, publisher)
    crashes: list[BaseException] = []

    async def crash(reason: BaseException) -> None:
        crashes.append(reason)

    runner.app.crash = crash  # type: ignore[method-assign]
    return runner, crashes


async def test_past_the_dlq_limit_the_runner_crashes_the_worker_and_acks_no_further(
    tmp_path: Path,
) -> None:
    class Keeping(Handler):
        name = "postgres"
        shape = Shape(1, 0)

        async def handle(self, batch: Batch) -> None:
            raise AssertionError("undecodable messages never reach the handler")

    publisher = RecordingPublisher()
    runner, crashes = crash_recording_runner(tmp_path, Keeping(), publisher)
    runner.dlq.limit = DlqLimit(max_consecutive=2)
    stream = FakeStream(
        [SourceMessage(TOPICS.clean(VISIT_COMPLETED), 0, i, b"k", b"{}", []) for i in range(3)]
    )
    runner.fence.assign([(TOPICS.clean(VISIT_COMPLETED), 0)])
    with pytest.raises(DlqLimitExceeded):
        await asyncio.wait_for(runner._agent(stream), 10)
    assert stream.acked == [0, 1]  # the third, past the limit, is not acked: a restart repeats it
    assert len(dead_letters(publisher)) == 3
    assert [type(c) for c in crashes] == [DlqLimitExceeded]


class Raising(RecordingPublisher):
    """A publisher whose next ``failures_left`` DLQ writes raise an unclassified error."""

    def __init__(self, failures_left: int = 1) -> None:
        super().__init__()
        self.failures_left = failures_left

    async def publish(self, topic: str, value: bytes, **kwargs: Any) -> None:
        if topic == TOPICS.dlq and self.failures_left:
            self.failures_left -= 1
            raise RuntimeError("broker said no")
        await super().publish(topic, value, **kwargs)


class Isolating(Failing):
    shape = Shape(10, 0, on_error="isolate")


async def test_a_dlq_write_error_mid_decode_retries_every_message_of_the_batch() -> None:
    publisher = Raising()
    handler = Isolating()
    bad = SourceMessage(TOPICS.clean(VISIT_COMPLETED), 0, 1, b"k", b"not json", [])
    sources = [message(sample_visit("gfe_a"), 0), bad, message(sample_visit("gfe_b"), 2)]
    await process(handler, sources, tools_for("dedupe", publisher))
    assert sorted(set(handler.handled)) == ["gfe_a", "gfe_b"]  # the tail was handled too
    (letter,) = dead_letters(publisher)
    assert letter["source_offset"] == "1"


async def test_a_dlq_write_error_escapes_a_stage_that_lets_errors_escape() -> None:
    handler = Failing()  # the default: escape, nothing acked
    bad = SourceMessage(TOPICS.clean(VISIT_COMPLETED), 0, 1, b"k", b"not json", [])
    sources = [message(sample_visit("gfe_a"), 0), bad, message(sample_visit("gfe_b"), 2)]
    with pytest.raises(RuntimeError):
        await process(handler, sources, tools_for("postgres", Raising()))


def flaky(table: Any) -> Any:
    """The send-once table failing its first store write (after the changelog's ack)."""
    apply = table.apply
    failures = [1]

    def failing_once(write: Any, written: Any) -> None:
        if failures[0]:
            failures[0] -= 1
            raise RuntimeError("store write failed")
        apply(write, written)

    table.apply = failing_once
    return table


async def test_an_email_send_once_error_escapes_unacked_and_sends_no_second_email(
    tmp_path: Path,
) -> None:
    publisher = RecordingPublisher()
    clinic = Mailbox("clinic")
    handler = EmailHandler({"clinic": clinic}, NoMarkers(), flaky(sent_table(tmp_path)), 1.0)  # type: ignore[dict-item]
    applied = message(sample_visit("gfe_1"), 0, TOPICS.clean(VISIT_COMPLETED), Disposition.APPLY)
    with pytest.raises(RuntimeError):
        await process(handler, [applied], tools_for("email", publisher))
    assert clinic.sent == 1  # not retried at once (a second email), not dead-lettered
    assert not dead_letters(publisher)


def test_each_stage_says_what_an_unexpected_handler_error_does() -> None:
    from streams.dedupe import SHAPE as DEDUPE
    from streams.email_stage import SHAPE as EMAIL

    assert (DEDUPE.on_error, EMAIL.on_error, Shape(1, 0).on_error) == (
        "isolate",
        "escape",
        "escape",
    )


class Keeping(Handler):
    name = "postgres"
    shape = Shape(10_000, 0)

    def __init__(self) -> None:
        self.handled = 0

    async def handle(self, batch: Batch) -> None:
        self.handled += len(batch.records)


def undecodable(offset: int) -> SourceMessage:
    return SourceMessage(TOPICS.clean(VISIT_COMPLETED), 0, offset, b"k", b"not json", [])


async def test_a_batch_of_1500_invalid_among_valid_messages_never_trips_the_limit() -> None:
    publisher = RecordingPublisher()
    tools = tools_for("postgres", publisher)  # the default limit, 1000
    sources = [
        undecodable(i)
        if i % 3
        else message(sample_visit(f"gfe_{i}"), i, TOPICS.clean(VISIT_COMPLETED))
        for i in range(2250)
    ]
    handler = Keeping()
    await process(handler, sources, tools)
    await process(handler, sources, tools)
    assert handler.handled == 2 * 750
    assert len(dead_letters(publisher)) == 2 * 1500


async def test_1001_invalid_messages_in_a_row_across_batches_trip_the_limit() -> None:
    tools = tools_for("postgres", RecordingPublisher())
    await process(Keeping(), [undecodable(i) for i in range(500)], tools)
    await process(Keeping(), [undecodable(i) for i in range(500, 1000)], tools)
    with pytest.raises(DlqLimitExceeded):
        await process(Keeping(), [undecodable(1000)], tools)


async def test_an_event_dead_lettered_once_per_email_kind_counts_once(tmp_path: Path) -> None:
    class Refusing(Mailbox):
        async def write(self, batch: Any) -> None:
            raise InvalidBatch("address refused (550)")

    publisher = RecordingPublisher()
    senders = {"clinic": Refusing("clinic"), "patient": Refusing("patient")}
    handler = EmailHandler(senders, NoMarkers(), sent_table(tmp_path), 1.0)  # type: ignore[arg-type]
    tools = tools_for("email", publisher, DlqLimit(max_consecutive=1))
    applied = message(sample_visit("gfe_1"), 0, TOPICS.clean(VISIT_COMPLETED), Disposition.APPLY)
    await process(handler, [applied], tools)
    assert len(dead_letters(publisher)) == 2
    with pytest.raises(DlqLimitExceeded):
        await process(
            handler,
            [message(sample_visit("gfe_2"), 1, TOPICS.clean(VISIT_COMPLETED), Disposition.APPLY)],
            tools,
        )


def test_the_dlq_limit_is_a_setting_above_zero(monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    from streams.settings import StreamsSettings

    monkeypatch.setenv("STREAMS_DLQ_LIMIT", "5")
    assert StreamsSettings().dlq_limit == 5
    monkeypatch.setenv("STREAMS_DLQ_LIMIT", "0")
    with pytest.raises(ValidationError, match="dlq_limit"):
        StreamsSettings()


async def test_the_sink_metrics_count_only_the_records_written_and_time_only_the_write() -> None:
    from prometheus_client import CollectorRegistry

    from streams.metrics import SinkWrites
    from streams.sink_stage import SinkHandler

    class Slow(Mailbox):
        async def write(self, batch: Any) -> None:
            await asyncio.sleep(0.05)
            await super().write(batch)

    class SlowDlq(RecordingPublisher):
        async def publish(self, topic: str, value: bytes, **kwargs: Any) -> None:
            await asyncio.sleep(0.5)  # a slow dead letter is not the sink's write time
            await super().publish(topic, value, **kwargs)

    writes = SinkWrites("postgres")
    sink = Slow("postgres")
    handler = SinkHandler(sink, Shape(10, 0), 1.0, writes)  # type: ignore[arg-type]
    sources = [undecodable(0), *(message(sample_visit(f"gfe_{i}"), i) for i in (1, 2))]
    await process(handler, sources, tools_for("postgres", SlowDlq()))
    assert sink.sent == 2
    registry = CollectorRegistry()
    for collector in writes.collectors():
        registry.register(collector)

    def total(name: str) -> float | None:
        return registry.get_sample_value(f"{name}_sum", {"stage": "postgres"})

    assert total("sink_batch_size") == 2  # the undecodable message is not a record written
    assert 0.05 <= (total("sink_write_seconds") or 0) < 0.5


async def test_an_error_that_escapes_leaves_the_batch_unacked(tmp_path: Path) -> None:
    from spakinect_pipeline.config import KafkaSettings
    from streams.faust_app import create_faust_app
    from streams.runner import StageEnv, StageParts, StageRunner
    from streams.settings import StreamsSettings

    class Escaping(Handler):
        name = "email"
        shape = Shape(10, 0)  # on_error="escape", as the email stage

        async def handle(self, batch: Batch) -> None:
            raise RuntimeError("send-once table write failed")

    streams, kafka = StreamsSettings(state_dir=tmp_path, store="memory"), KafkaSettings()
    env = StageEnv(create_faust_app("email", streams, kafka), streams, kafka, TOPICS)
    publisher = RecordingPublisher()
    runner = StageRunner(
        env,
        StageParts(Escaping(), [TOPICS.clean(VISIT_COMPLETED)], [TOPICS.clean(VISIT_COMPLETED)]),
        None,
        publisher,
    )
    stream = FakeStream([message(sample_visit("gfe_1"), 0, TOPICS.clean(VISIT_COMPLETED))])
    runner.fence.assign([(TOPICS.clean(VISIT_COMPLETED), 0)])
    with pytest.raises(RuntimeError):
        await asyncio.wait_for(runner._agent(stream), 10)
    assert stream.acked == []
    assert not dead_letters(publisher)


def slow_runner(tmp_path: Path, seconds: float) -> tuple[Any, list[int], Any]:
    """A real StageRunner (Faust memory app) whose handler takes ``seconds`` per batch."""
    from spakinect_pipeline.config import KafkaSettings
    from streams.faust_app import create_faust_app
    from streams.runner import StageEnv, StageParts, StageRunner
    from streams.settings import StreamsSettings

    handled: list[int] = []

    class Slow(Handler):
        name = "email"
        shape = Shape(1, 0)

        async def handle(self, batch: Batch) -> None:
            await asyncio.sleep(seconds)
            batch.ensure_owned()  # the mark, after the send
            handled.extend(r.source.offset for r in batch.records)

    streams, kafka = StreamsSettings(state_dir=tmp_path, store="memory"), KafkaSettings()
    env = StageEnv(create_faust_app("email", streams, kafka), streams, kafka, TOPICS)
    runner = StageRunner(
        env,
        StageParts(Slow(), [TOPICS.clean(VISIT_COMPLETED)], [TOPICS.clean(VISIT_COMPLETED)]),
        None,
        RecordingPublisher(),
    )
    runner.fence.assign([(TOPICS.clean(VISIT_COMPLETED), 0)])
    commits: list[int] = []

    async def commit(*args: Any, **kwargs: Any) -> bool:
        commits.append(1)
        return True

    runner.app.consumer.commit = commit
    return runner, handled, commits


async def test_a_stop_lets_the_batch_in_flight_finish_ack_and_commit(tmp_path: Path) -> None:
    runner, handled, commits = slow_runner(tmp_path, 0.2)
    visits = [message(sample_visit(f"gfe_{i}"), i, TOPICS.clean(VISIT_COMPLETED)) for i in range(3)]
    stream = FakeStream(visits)
    agent = asyncio.ensure_future(runner._agent(stream))
    await asyncio.sleep(0.05)  # the first batch is in flight
    await runner.drain(5)
    assert (handled, stream.acked, commits) == ([0], [0], [1])  # finished, acked, committed
    await asyncio.sleep(0.3)
    assert stream.acked == [0]  # nothing more taken after the stop
    agent.cancel()


async def test_a_batch_whose_partition_is_revoked_past_the_bound_acks_nothing(
    tmp_path: Path,
) -> None:
    runner, handled, _ = slow_runner(tmp_path, 0.2)
    stream = FakeStream([message(sample_visit("gfe_0"), 0, TOPICS.clean(VISIT_COMPLETED))])
    agent = asyncio.ensure_future(runner._agent(stream))
    await asyncio.sleep(0.05)
    fenced = await runner.fence.revoke({(TOPICS.clean(VISIT_COMPLETED), 0)}, bound_s=0.01)
    assert len(fenced) == 1
    await asyncio.sleep(0.3)
    assert (handled, stream.acked) == ([], [])  # no mark written, no ack
    agent.cancel()


async def test_a_handler_that_finds_its_config_wrong_at_start_crashes_the_worker_acking_nothing(
    tmp_path: Path,
) -> None:
    from spakinect_pipeline.config import ConfigError

    class WrongKey(Handler):
        name = "postgres"
        shape = Shape(1, 0)

        async def start(self) -> None:  # as a stage whose master key opens no key record
            raise ConfigError("PHI_KAFKA_MASTER_KEYS does not open the key topic's keys")

        async def handle(self, batch: Batch) -> None:
            raise AssertionError("never reached")

    runner, crashes = crash_recording_runner(tmp_path, WrongKey(), RecordingPublisher())
    stream = FakeStream([SourceMessage(TOPICS.clean(VISIT_COMPLETED), 0, 0, b"k", b"{}", [])])
    with pytest.raises(ConfigError):
        await asyncio.wait_for(runner._agent(stream), 10)
    assert [type(c) for c in crashes] == [ConfigError]
    assert stream.acked == []
