"""The raw limit for the pipeline-throughput benchmark: no Faust, no dedupe stage.

A plain aiokafka consumer reads the raw visit topic in large batches and
writes the same rows our Postgres sink writes (same decoding, row and sealing code),
by ``COPY`` into temporary staging tables and ``INSERT ... SELECT ... ON
CONFLICT DO NOTHING``, one transaction per batch, then commits the offsets.
Duplicates are absorbed by the primary keys. This bounds what any pipeline
on this Kafka, this Postgres and this Python can do.

    python -m bench.raw_limit --bootstrap HOST:PORT --dsn DSN --group G [--topic T]
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer

from events.envelope import Record, decode_envelope
from events.messages import SourceMessage
from events.registry import VISIT_COMPLETED
from events.topics import Topics
from sinks.postgres.protect import EVENT_COLUMNS, VISIT_COLUMNS, Protection, protect
from sinks.postgres.rows import batch_rows
from sinks.postgres.writer import utcnow
from spakinect_pipeline.phi.crypto import keyring_from, new_key_entry

TREATMENT_COLUMNS = ["gfe_id", "treatment_name", "decision"]
STAGING = {
    "spakinect_events": list(EVENT_COLUMNS),
    "gfe_visits": list(VISIT_COLUMNS),
    "gfe_visit_treatments": TREATMENT_COLUMNS,
}


# A throwaway key: patient fields are sealed here too, the same work as our writer does.
KEYRING = keyring_from(new_key_entry("bench"), new_key_entry().split(":", 1)[1])


def record_of(message: Any) -> Record:
    source = SourceMessage(message.topic, message.partition, message.offset, message.key, None, ())
    return Record(decode_envelope(message.value), source)


async def write(conn: asyncpg.Connection, messages: list[Any]) -> None:
    rows = protect(batch_rows([record_of(m) for m in messages]), Protection(KEYRING, utcnow()))
    batches = {
        "spakinect_events": rows.events,
        "gfe_visits": rows.visits,
        "gfe_visit_treatments": rows.visit_treatments,
    }
    async with conn.transaction():
        for table, columns in STAGING.items():
            staged = f"stage_{table}"
            await conn.copy_records_to_table(staged, records=batches[table], columns=columns)
            names = ", ".join(columns)
            await conn.execute(
                f"INSERT INTO {table} ({names}) SELECT {names} FROM {staged} "  # noqa: S608 - constants
                "ON CONFLICT DO NOTHING"
            )


async def run(bootstrap: str, dsn: str, group: str, topic: str) -> None:
    conn = await asyncpg.connect(dsn)
    for table in STAGING:
        await conn.execute(
            f"CREATE TEMP TABLE stage_{table} (LIKE {table} INCLUDING DEFAULTS) "
            "ON COMMIT DELETE ROWS"
        )
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        max_partition_fetch_bytes=8 * 2**20,
        fetch_max_bytes=64 * 2**20,
    )
    await consumer.start()
    try:
        while True:
            fetched = await consumer.getmany(timeout_ms=500, max_records=5000)
            messages = [m for batch in fetched.values() for m in batch]
            if messages:
                await write(conn, messages)
                await consumer.commit()
    finally:
        await consumer.stop()
        await conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--topic", default=Topics().raw(VISIT_COMPLETED))
    args = parser.parse_args()
    asyncio.run(run(args.bootstrap, args.dsn, args.group, args.topic))


if __name__ == "__main__":
    main()
