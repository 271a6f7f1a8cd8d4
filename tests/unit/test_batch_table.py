"""BatchTable against real Faust stores (RocksDB on disk, memory), no Kafka.

These pin the private Faust parts the batch path uses: what it writes must be
what Faust itself would read back, recover from and resume after.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from faust.types import TP

from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.publisher import Written
from streams.batch_table import BatchTable
from streams.faust_app import create_faust_app, json_table
from streams.settings import StreamsSettings

ENTRY = {"p": 3, "at": 1, "ts": None, "seen": {"5": [1, True]}}


def table_on(store: str, tmp_path: Path) -> BatchTable:
    app = create_faust_app(
        "dedupe", StreamsSettings(state_dir=tmp_path, store=store), KafkaSettings()
    )
    return BatchTable(json_table(app, "entities", 8))


@pytest.mark.parametrize("store", ["rocksdb", "memory"])
def test_changes_read_back_once_applied_and_tombstones_remove(store: str, tmp_path: Path) -> None:
    table = table_on(store, tmp_path)
    if store == "rocksdb":
        table.table.data._db_for_partition(3)  # Faust opens it when the partition is assigned
    first = table.prepare(
        3, {"visit.completed:a": ENTRY, "visit.completed:b": ENTRY}, table.held(3)
    )
    assert table.get_many(3, ["visit.completed:a"]) == [None]  # nothing before apply
    table.apply(first, [Written(table.topic, 3, 10), Written(table.topic, 3, 11)])
    assert table.get_many(3, ["visit.completed:a", "x", "visit.completed:b"]) == [
        ENTRY,
        None,
        ENTRY,
    ]

    second = table.prepare(3, {"visit.completed:a": None}, table.held(3))
    table.apply(second, [Written(table.topic, 3, 12)])
    assert table.get_many(3, ["visit.completed:a", "visit.completed:b"]) == [None, ENTRY]


def test_the_changelog_carries_what_faust_itself_would_write(tmp_path: Path) -> None:
    table = table_on("rocksdb", tmp_path)
    store: Any = table.table.data
    write = table.prepare(
        5, {"visit.completed:a": ENTRY, "visit.completed:gone": None}, table.held(5)
    )
    entry, tombstone = write.messages
    assert entry.topic == tombstone.topic == "spakinect-pipeline-dedupe-entities-changelog"
    assert (entry.partition, tombstone.partition) == (5, 5)
    assert entry.key == store._encode_key("visit.completed:a")
    assert entry.value == store._encode_value(ENTRY)
    assert tombstone.value is None


def test_the_store_gets_the_newest_acked_offset_of_its_partition_for_recovery(
    tmp_path: Path,
) -> None:
    table = table_on("rocksdb", tmp_path)
    store: Any = table.table.data
    store._db_for_partition(2)
    write = table.prepare(2, {"visit.completed:a": ENTRY}, table.held(2))
    acked = [Written(table.topic, 2, 40), Written(table.topic, 7, 99), Written("other", 2, 77)]
    table.apply(write, acked)
    # Faust's recovery resumes the changelog after this offset.
    assert store.persisted_offset(TP(table.topic, 2)) == 40
    # Faust's own read path (no current event: it searches the open databases) sees it.
    assert store["visit.completed:a"] == ENTRY


def test_a_partition_revoked_or_reassigned_meanwhile_is_left_to_the_changelog(
    tmp_path: Path,
) -> None:
    table = table_on("rocksdb", tmp_path)
    store: Any = table.table.data
    # Not held here: reads as empty and opens nothing behind Faust's back.
    assert table.get_many(4, ["visit.completed:a"]) == [None]
    assert 4 not in store._dbs
    write = table.prepare(4, {"visit.completed:a": ENTRY}, table.held(4))
    table.apply(write, [Written(table.topic, 4, 1)])
    assert 4 not in store._dbs

    # Held when the batch read it, then revoked and given back before the ack: Faust
    # opened it again (and may be recovering it); the late write must not land there.
    store._db_for_partition(6)
    write = table.prepare(6, {"visit.completed:a": ENTRY}, table.held(6))
    store._dbs.pop(6).close()
    store._db_for_partition(6)
    table.apply(write, [Written(table.topic, 6, 9)])
    assert table.get_many(6, ["visit.completed:a"]) == [None]
    assert store.persisted_offset(TP(table.topic, 6)) is None
