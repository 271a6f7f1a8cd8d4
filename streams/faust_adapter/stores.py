"""Faust's table stores, a batch at a time, and closed when their partition leaves.

Faust's stores have no batch interface and no way to hand a partition's
RocksDB back: on revoke it drops its handle without closing it
(``db.close()`` is commented out in faust-streaming 0.15), so the RocksDB
lock is held until garbage collection — and a batch still holding the
handle makes the partition's reassignment fail on the lock (30 retries,
then the worker exits). :func:`close_released` closes what Faust let go.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from faust.stores import memory as memory_store
from faust.stores import rocksdb as rocksdb_store


def is_memory(table: Any) -> bool:
    return isinstance(table.data, memory_store.Store)


def partition_db(table: Any, partition: int) -> Any:
    """The RocksDB of ``partition`` as Faust opened it for the current assignment, or None.

    Never opens one: a partition not held here is left to its owner and the changelog.
    """
    return table.data._dbs.get(partition)


def open_partition_db(table: Any, partition: int) -> Any:
    """Open ``partition``'s RocksDB as Faust's assignment does (tools and tests only)."""
    return table.data._db_for_partition(partition)


def close_all(table: Any) -> None:
    """Close every RocksDB of ``table`` this process opened, releasing their locks."""
    dbs = table.data._dbs
    for db in dbs.values():
        db.close()
    dbs.clear()


def offset_key(table: Any) -> bytes:
    """Where a RocksDB store keeps the changelog offset Faust's recovery resumes after."""
    key: bytes = table.data.offset_key
    return key


def memory_put(table: Any, key: str, value: Any, partition: int) -> None:
    """Set ``key`` in a memory store as Faust's own write does (its partition remembered)."""
    store = table.data
    store.data[key] = value
    store._key_partition[key] = partition


def memory_delete(table: Any, key: str) -> None:
    store = table.data
    store.data.pop(key, None)
    store._key_partition.pop(key, None)


def memory_get(table: Any, key: str) -> Any:
    return table.data.data.get(key)


Handles = list[tuple[Any, int, Any]]  # (store, partition, db)


def held_handles(tables: Iterable[Any], tps: Iterable[Any]) -> Handles:
    """The open RocksDB handles of ``tps``' changelog partitions, before a revoke."""
    handles: Handles = []
    wanted = list(tps)
    for table in tables:
        store = table.data
        if not isinstance(store, rocksdb_store.Store):
            continue
        topics = table.changelog_topic.topics
        for tp in wanted:
            db = store._dbs.get(tp.partition) if tp.topic in topics else None
            if db is not None:
                handles.append((store, tp.partition, db))
    return handles


def close_released(handles: Handles) -> int:
    """Close each handle Faust no longer holds (revoked); return how many were closed."""
    closed = 0
    for store, partition, db in handles:
        if store._dbs.get(partition) is not db:
            db.close()
            closed += 1
    return closed
