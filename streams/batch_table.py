"""A Faust table read and written a batch at a time, past Faust's per-key path.

Faust writes a table one key at a time: each ``table[key] = value`` is a store
put, a changelog message in a producer future of its own, and, when that
future completes, one more store put for the persisted offset. A stage that
decides a whole batch at once pays that per event. :class:`BatchTable` keeps
the table, its changelog topic, its encoding and Faust's recovery, and does per
batch what Faust does per key:

- :meth:`get_many`: one multi-get from the partition's store;
- :meth:`prepare`: every change as one message for a single ``publish_many``
  (same topic, partition, key and value bytes as Faust's own writes), which
  the caller awaits until acked;
- :meth:`apply`: then one RocksDB write batch per partition, the persisted
  offset in it, so the store never holds what the changelog does not.

A worker that dies between the two has the changes in the changelog and not in
its store: Faust's recovery reads the changelog from the persisted offset on,
so the store catches up at the next assignment. Reads and writes use only the
store Faust opened for the partition's current assignment, never opening one:
a partition revoked (or revoked and given back) while a batch was in flight
is left to the changelog, so a late write cannot move the persisted offset past
what another worker wrote meanwhile.

Faust's stores have no public batch interface: the store access is
:mod:`streams.faust_adapter`, pinned by ``tests/unit/test_batch_table.py``
against real Faust stores.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import rocksdict

from spakinect_pipeline.publisher import Message, Written
from streams import faust_adapter

Changes = Mapping[str, Any]  # key -> new value, None for a tombstone


@dataclass(frozen=True, slots=True)
class TableWrite:
    """One partition's changes, and the changelog messages that carry them (same bytes)."""

    partition: int
    changes: Changes
    messages: Sequence[Message]
    store: Any  # the partition's store when the batch read it: written only if still current


class Table(Protocol):
    """What a batch handler needs of its table: what :class:`BatchTable` offers."""

    def held(self, partition: int) -> Any: ...

    def get_many(self, partition: int, keys: Sequence[str]) -> list[Any]: ...

    def prepare(self, partition: int, changes: Changes, held: Any) -> TableWrite: ...

    def apply(self, write: TableWrite, written: Sequence[Written]) -> None: ...

    def items(self) -> Iterable[tuple[str, Any]]: ...


class BatchTable:
    """Batch reads and writes of one Faust table (RocksDB or memory store)."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.topic: str = table.changelog_topic.get_topic_name()
        self._serializers = table.app.serializers

    def _key(self, key: str) -> bytes:
        table = self.table
        raw: bytes = self._serializers.dumps_key(
            table.key_type, key, serializer=table.key_serializer
        )
        return raw

    def _value(self, value: Any) -> bytes | None:
        if value is None:
            return None
        table = self.table
        raw: bytes = self._serializers.dumps_value(
            table.value_type, value, serializer=table.value_serializer
        )
        return raw

    def held(self, partition: int) -> Any:
        """The store of ``partition`` as Faust assigned it now (None: not held here).

        Taken when a batch reads, and given to :meth:`prepare`: the batch's writes go
        to the store only if it is still that one.
        """
        if faust_adapter.is_memory(self.table):
            return self.table.data
        return faust_adapter.partition_db(self.table, partition)

    def get_many(self, partition: int, keys: Sequence[str]) -> list[Any]:
        """The values of ``keys`` in ``partition``'s store (None where absent), in order.

        A partition not held here (revoked meanwhile) reads as empty: its events pass
        again (the sinks are idempotent) and its writes are left to the changelog.
        """
        if faust_adapter.is_memory(self.table):
            return [faust_adapter.memory_get(self.table, key) for key in keys]
        db = self.held(partition)
        if db is None:
            return [None] * len(keys)
        raws = db.get([self._key(key) for key in keys])
        table = self.table
        return [
            None
            if raw is None
            else self._serializers.loads_value(
                table.value_type, raw, serializer=table.value_serializer
            )
            for raw in raws
        ]

    def prepare(self, partition: int, changes: Changes, held: Any) -> TableWrite:
        """``changes`` to ``partition`` and their changelog messages, for one ``publish_many``;
        ``held``: :meth:`held` when the batch read the partition."""
        messages = [
            Message(self.topic, self._value(value), self._key(key), partition=partition)
            for key, value in changes.items()
        ]
        return TableWrite(partition, changes, messages, held)

    def apply(self, write: TableWrite, written: Sequence[Written]) -> None:
        """Write to the local store what the changelog acked (``written``: its offsets)."""
        if faust_adapter.is_memory(self.table):
            for key, value in write.changes.items():
                if value is None:
                    faust_adapter.memory_delete(self.table, key)
                else:
                    faust_adapter.memory_put(self.table, key, value, write.partition)
            return
        db = self.held(write.partition)
        if db is None or db is not write.store:
            return  # revoked meanwhile: the changelog has it for whoever holds it now
        batch = rocksdict.WriteBatch(raw_mode=True)
        for message in write.messages:
            raw_key = cast(bytes, message.key)  # prepare() sets every key
            if message.value is None:
                batch.delete(raw_key)
            else:
                batch.put(raw_key, message.value)
        offsets = [
            w.offset for w in written if w.topic == self.topic and w.partition == write.partition
        ]
        if offsets:
            batch.put(faust_adapter.offset_key(self.table), str(max(offsets)).encode())
        db.write(batch)

    def items(self) -> Iterable[tuple[str, Any]]:
        """Every entry of the partitions this worker holds (Faust's own iteration)."""
        return self.table.items()  # type: ignore[no-any-return]
