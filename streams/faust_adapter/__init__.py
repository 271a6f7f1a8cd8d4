"""The one seam to Faust's, mode's and aiokafka's private parts.

Everything the pipeline promises about offsets, tables and rebalances rests on
a few of Faust's internals. They are reached from this package only, and each
is pinned by ``tests/unit/test_faust_adapter.py`` (and the store parts by
``tests/unit/test_batch_table.py``) against the installed versions, so an
upgrade that renames or changes one fails there, not in production. The
protocol they implement is docs/commit-protocol.md.

Private names used, and where:

:mod:`.consumer` (``faust.transport.drivers.aiokafka.Consumer`` and its thread)
    overrides ``_new_consumer_thread``, ``_to_message``, ``_add_gap``,
    ``_new_offset``, ``_commit_offsets``; reads and writes ``_acked``,
    ``_acked_index``, ``_committed_offset``; calls ``_is_changelog_tp``;
    the thread's ``_create_worker_consumer``, ``_ensure_consumer`` and
    ``call_thread``, ``_thread``; aiokafka's ``AIOKafkaConsumer._fetch_min_bytes``
    and ``_fetch_max_wait_ms`` (read by its fetcher when it starts), ``_fetcher``
    and the fetcher's ``_fetch_min_bytes`` and ``_fetch_max_wait_ms`` (read per
    fetch request: the adaptive fetch shape).
:mod:`.app` (``faust.App``)
    overrides ``_new_transport`` and ``on_stop`` (mode's documented hook).
:mod:`.stores` (``faust.stores.rocksdb.Store`` and ``memory.Store``)
    ``_dbs``, ``_db_for_partition``, ``offset_key``; the memory store's
    ``data`` and ``_key_partition``.
:mod:`.worker` (``faust.Worker``, i.e. mode's worker)
    overrides ``_schedule_shutdown`` (its SIGTERM/SIGINT hook).
"""

from streams.faust_adapter.app import PipelineApp, QuietMonitor, StrictTransport
from streams.faust_adapter.consumer import (
    RewindingConsumerThread,
    StrictConsumer,
    messages_behind,
)
from streams.fetch_shape import FetchShape

__all__ = [
    "FetchShape",
    "PipelineApp",
    "QuietMonitor",
    "RewindingConsumerThread",
    "StrictConsumer",
    "StrictTransport",
    "messages_behind",
]
