"""Build one Faust app per stage: its own consumer group, state folder and web port."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import faust
from aiokafka.errors import KafkaError
from faust.sensors import Monitor, Sensor

from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.kafka_problems import classify, refused, wrong_setting_error
from spakinect_pipeline.topic_admin import align_topic_configs, changelog_config, ensure_topics
from streams.faust_adapter import PipelineApp
from streams.fetch_shape import FetchShape
from streams.settings import StreamsSettings

log = logging.getLogger(__name__)


def use_uvloop() -> None:
    """Run the worker's event loop on uvloop, as the ingress does (mode's loop selection).

    Faust's per-message path is mostly event-loop work (futures, tasks, socket
    writes per produce), which uvloop does in C. Faust's Cython stream iterator
    needs nothing: it is on whenever ``NO_CYTHON`` is unset.
    """
    import mode.loop

    mode.loop.use("uvloop")


class QuietMonitor(Monitor):
    """Faust's monitor without its per-message bookkeeping.

    Faust's default sensor counts and times every message and event for its own
    ``/stats`` page, which our workers do not serve (their figures are
    :mod:`streams.metrics`). The per-message hooks are the base sensor's no-ops,
    except the one stamp Faust's consumer reads: when a stream last took an event
    from each partition (its "Stream has not started processing" check). The rest
    (commits, rebalances, the offsets Faust tracks) stays.
    """

    on_message_in = Sensor.on_message_in
    on_stream_event_out = Sensor.on_stream_event_out
    on_message_out = Sensor.on_message_out
    on_table_get = Sensor.on_table_get
    on_table_set = Sensor.on_table_set
    on_table_del = Sensor.on_table_del

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        self.stream_inbound_time[tp] = time.monotonic()


def create_faust_app(stage: str, streams: StreamsSettings, kafka: KafkaSettings) -> faust.App:
    """A Faust app for ``stage``; tables use RocksDB unless STREAMS_STORE=memory."""
    datadir = streams.state_dir / stage
    datadir.mkdir(parents=True, exist_ok=True)
    options: dict[str, Any] = {
        "broker": [f"kafka://{server}" for server in kafka.bootstrap_servers],
        "store": f"{streams.store}://",
        "datadir": str(datadir),
        "topic_partitions": kafka.partitions,
        "topic_replication_factor": kafka.replication_factor,
        "topic_allow_declare": True,
        "topic_disable_leader": True,
        "consumer_auto_offset_reset": "earliest",
        "producer_acks": -1,
        # Table writes go to the changelog one message at a time: let them share requests.
        "producer_linger": 0.005,
        "producer_max_batch_size": 256 * 1024,
        "broker_commit_every": 1000,
        "broker_commit_interval": 1.0,
        "key_serializer": "raw",
        "value_serializer": "raw",
        "web_enabled": streams.web_port > 0,
        "web_port": streams.web_port or 6066,
        "web_bind": streams.web_bind,
        # Faust's /table pages would serve table contents, /router the cluster's topology.
        "web_tables_enabled": False,
        "web_router_enabled": False,
        "table_standby_replicas": 0,
        "broker_session_timeout": streams.session_timeout_s,
        "broker_heartbeat_interval": min(3.0, streams.session_timeout_s / 3),
        # Our stages ack manually; unacked events stay uncommitted, so shutdown need not wait.
        "stream_wait_empty": False,
        "Monitor": QuietMonitor,
    }
    credentials = broker_credentials(kafka)
    if credentials is not None:
        options["broker_credentials"] = credentials
    app = PipelineApp(streams.group_id(stage), **options)
    app.fetch = FetchShape(streams.fetch_min_bytes, int(streams.fetch_max_wait_s * 1000))
    app.drain_bound_s = streams.drain_bound_s
    app.fetch_adapt_wait_s = streams.fetch_adapt_wait_s
    return app


def broker_credentials(kafka: KafkaSettings) -> Any:
    """Faust's form of the same TLS/SASL settings the aiokafka clients get.

    KafkaSettings refuses a half-set protocol, so SASL here always has its
    mechanism, user and password, and TLS its context (tests/unit/test_kafka_security.py
    checks both forms agree for every protocol).
    """
    if kafka.security_protocol == "PLAINTEXT":
        return None
    if kafka.uses_sasl:
        assert kafka.sasl_password is not None
        return faust.SASLCredentials(
            username=kafka.sasl_username,
            password=kafka.sasl_password.get_secret_value(),
            mechanism=kafka.sasl_mechanism,
            ssl_context=kafka.ssl_context(),
        )
    return faust.SSLCredentials(kafka.ssl_context())


def changelog_topics(app: faust.App) -> list[str]:
    """The changelog topic of every table the stage declared."""
    return [table.changelog_topic.get_topic_name() for table in app.tables.values()]


async def prepare_changelogs(
    app: faust.App, kafka: KafkaSettings, window_s: float, timeout: float = 120
) -> None:
    """Check Kafka takes our settings, then create or align the tables' changelog topics.

    Left to Faust, a changelog created at start-up can be missing from the
    first metadata the agent sees, and the first table write then fails with
    PartitionsMismatch ("changelog topic has 0 partitions"). A wrong password,
    CA or ACL stops the worker here with a line naming the setting to check
    (:class:`KafkaRefused`), where Faust would retry it quietly; an unreachable
    Kafka is retried, as before.
    """
    names = changelog_topics(app)
    if not names:
        await _refuse_wrong_settings(kafka)
        return
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            config = changelog_config(kafka, window_s)
            created = await ensure_topics(kafka, names, config)
            await align_topic_configs(kafka, [n for n in names if n not in created], config)
            return
        except (KafkaError, OSError) as exc:
            if (refusal := refused(exc)) is not None:
                log.error("%s; the worker cannot start", refusal)
                raise refusal from None
            if asyncio.get_running_loop().time() > deadline:
                raise
            log.warning("cannot create changelog topics yet: %s; retrying", classify(exc))
            await asyncio.sleep(2)


async def _refuse_wrong_settings(kafka: KafkaSettings) -> None:
    """For a stage without tables: one connection, to stop on a wrong password or CA at once."""
    failure = await wrong_setting_error(kafka, timeout=10)
    if failure is not None and (refusal := refused(failure)) is not None:
        log.error("%s; the worker cannot start", refusal)
        raise refusal from None


# Per table partition (one RocksDB each): Faust's defaults (3 x 64 MiB memtables and a
# 2 GiB block cache per database, one database per partition) put no useful bound on a
# worker's memory; with these a 60 s window's worker stays near 180 MiB (bench.state_bound).
ROCKSDB_OPTIONS = {
    "write_buffer_size": 4 * 2**20,
    "max_write_buffer_number": 2,
    "block_cache_size": 8 * 2**20,
}


def json_table(app: faust.App, name: str, partitions: int) -> Any:
    """A changelog-backed table with JSON keys and values, co-partitioned with the source."""
    schema: Any = faust.Schema(key_serializer="json", value_serializer="json")
    rocksdb = str(app.conf.store).startswith("rocksdb")
    return app.Table(
        name,
        default=None,
        partitions=partitions,
        schema=schema,
        options=ROCKSDB_OPTIONS if rocksdb else None,
    )
