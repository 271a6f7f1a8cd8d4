"""The peers for the pipeline-throughput benchmark: the same job written with Quix Streams.

Runs in its own venv (``.venv-quix``, ``bench/quix-requirements.txt``) with
the repository on ``PYTHONPATH``. Deciding reads the raw visit topic and
decides each event with our pure :func:`~streams.dedupe_logic.plan_batch`
against Quix's own (RocksDB, changelogged) state per key — the same entity
entry our dedupe stage keeps: event ids seen in the window and the newest
timestamp — and drops duplicates. Writing hands envelopes, with their
disposition, to a Quix ``BatchingSink`` that writes them with our Postgres
sink (one transaction per partition batch, newer-only apply). Quix's own
PostgreSQL sink writes one table of its own shape, so it cannot do the
newer-only apply. ``--mode``:

- ``dedupe``: decide, then publish the clean topic (key, envelope with its
  disposition and the headers ours writes): our dedupe stage's job;
- ``sink``: a second application (its own consumer group) reads the clean
  topic and writes Postgres: our Postgres stage's job. ``dedupe`` + ``sink``
  is the same job as ours, in two processes;
- ``single`` (default): decide and write in one process, no clean topic.

    .venv-quix/bin/python -m bench.quix_peer --bootstrap HOST:PORT --dsn DSN --group G [--mode M]
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from quixstreams import Application, State, message_context
from quixstreams.sinks import BatchingSink, SinkBatch

from events.envelope import Envelope, Record, decode_envelope, reencode
from events.messages import SourceMessage
from events.registry import VISIT_COMPLETED
from events.topics import Topics, headers
from sinks.postgres.writer import PostgresSink
from spakinect_pipeline.phi.crypto import keyring_from, new_key_entry
from streams.dedupe_logic import Drop, entity_key, plan_batch
from streams.settings import StreamsSettings

# DEDUPE_WINDOW's default, which ours runs with in this benchmark.
WINDOW_MS = int(StreamsSettings.model_fields["dedupe_window"].default * 1000)


def decide(value: bytes, state: State) -> Any:
    """The envelope with its disposition, or None for a duplicate (filtered out next)."""
    envelope = decode_envelope(value)
    plan = plan_batch(
        [(envelope, message_context().partition)],
        lambda _key: state.get("entry"),  # Quix state is per message key: the entity
        now_ms=int(time.time() * 1000),
        window_ms=WINDOW_MS,
    )
    decision = plan.verdicts[0]
    if isinstance(decision, Drop):
        return None
    state.set("entry", plan.entries[entity_key(envelope)])
    return envelope.model_copy(update={"disposition": decision})


class OurPostgresSink(BatchingSink):
    """Quix's batching around our Postgres sink, run on a private event loop."""

    def __init__(self, dsn: str) -> None:
        super().__init__()
        self._loop = asyncio.new_event_loop()
        # A throwaway key: the peer seals patient fields like our worker does (same work).
        keyring = keyring_from(new_key_entry("bench"), new_key_entry().split(":", 1)[1])
        self._sink = PostgresSink(dsn, keyring=keyring, pool_size=1, migrate_on_start=False)

    def setup(self) -> None:
        self._loop.run_until_complete(self._sink.start())

    def write(self, batch: SinkBatch) -> None:
        records = [
            Record(
                item.value, SourceMessage(batch.topic, batch.partition, item.offset, None, None, ())
            )
            for item in batch
        ]
        self._loop.run_until_complete(self._sink.write(records))


def clean_headers(envelope: Envelope, *_: Any) -> list[tuple[str, bytes]]:
    """The headers our dedupe stage puts on a clean message."""
    assert envelope.disposition is not None
    return headers(
        event=envelope.event, event_id=envelope.event_id, disposition=envelope.disposition.value
    )


def clean_value(envelope: Envelope) -> bytes:
    assert envelope.disposition is not None
    return reencode(envelope, envelope.disposition)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", default="state")
    parser.add_argument("--topic", default=Topics().raw(VISIT_COMPLETED))
    parser.add_argument("--clean-topic", default=Topics().clean(VISIT_COMPLETED))
    parser.add_argument("--mode", choices=("single", "dedupe", "sink"), default="single")
    args = parser.parse_args()
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        commit_interval=1.0,
        loglevel="WARNING",
    )
    options = {"key_deserializer": "str", "value_deserializer": "bytes"}
    if args.mode == "sink":
        stream = app.dataframe(app.topic(args.clean_topic, **options)).apply(decode_envelope)
        stream.sink(OurPostgresSink(args.dsn))
        app.run()
        return
    stream = app.dataframe(app.topic(args.topic, **options))
    stream = stream.apply(decide, stateful=True).filter(lambda envelope: envelope is not None)
    if args.mode == "single":
        stream.sink(OurPostgresSink(args.dsn))
    else:
        clean = app.topic(args.clean_topic, key_serializer="str", value_serializer="bytes")
        stream.set_headers(clean_headers).apply(clean_value).to_topic(clean)
    app.run()


if __name__ == "__main__":
    main()
