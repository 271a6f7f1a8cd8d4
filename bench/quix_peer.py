"""The peer for the pipeline-throughput benchmark: the same job written with Quix Streams.

Runs in its own venv (``.venv-quix``, ``bench/quix-requirements.txt``) with
the repository on ``PYTHONPATH``. One Quix application reads the raw visit
topic, decides each event with our pure :func:`~streams.dedupe_logic.plan_batch`
against Quix's own (RocksDB, changelogged) state per key — the same entity
entry our dedupe stage keeps: event ids seen in the window and the newest
timestamp — drops duplicates and hands the rest, with their disposition, to a Quix
``BatchingSink`` that writes them with our Postgres sink (one transaction per
partition batch, newer-only apply). Quix's own PostgreSQL sink writes one
table of its own shape, so it cannot do the newer-only apply.

    .venv-quix/bin/python -m bench.quix_peer --bootstrap HOST:PORT --dsn DSN --group G
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from quixstreams import Application, State, message_context
from quixstreams.sinks import BatchingSink, SinkBatch

from events.envelope import decode_envelope
from events.messages import SourceMessage
from events.topics import Topics
from sinks.base import Record
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--state-dir", default="state")
    parser.add_argument("--topic", default=Topics().visit_completed)
    args = parser.parse_args()
    app = Application(
        broker_address=args.bootstrap,
        consumer_group=args.group,
        auto_offset_reset="earliest",
        state_dir=args.state_dir,
        commit_interval=1.0,
        loglevel="WARNING",
    )
    topic = app.topic(args.topic, key_deserializer="str", value_deserializer="bytes")
    stream = app.dataframe(topic)
    stream = stream.apply(decide, stateful=True).filter(lambda envelope: envelope is not None)
    stream.sink(OurPostgresSink(args.dsn))
    app.run()


if __name__ == "__main__":
    main()
