"""A sink as a stage: clean-topic batches (and the sink's retry topic) written to one sink.

Each batch is written or, record by record, dead-lettered
(:func:`streams.delivery.deliver`) before the runner acks it.
"""

from __future__ import annotations

from collections.abc import Mapping

from sinks.base import Sink
from sinks.postgres.settings import PostgresSettings
from sinks.postgres.writer import PostgresSink
from spakinect_pipeline.config import load_settings
from spakinect_pipeline.phi.metrics import RedactionCollector
from spakinect_pipeline.phi.sealed_reader import stage_reader
from spakinect_pipeline.phi.settings import PhiSettings
from streams.delivery import Backoff, DeliveryStats, deliver
from streams.handler import Batch, Handler, Shape
from streams.metrics import SinkWrites
from streams.probes import postgres_check
from streams.runner import StageEnv, StageParts


class SinkHandler(Handler):
    """Writes each batch to ``sink``, retrying what is retryable, isolating what is invalid."""

    def __init__(
        self, sink: Sink, shape: Shape, max_backoff_s: float, writes: SinkWrites | None = None
    ) -> None:
        self.sink = sink
        self.name = sink.name
        self.shape = shape
        self.stats = DeliveryStats()
        self.backoff = Backoff(maximum=max_backoff_s)
        self.writes = writes or SinkWrites(sink.name)

    async def start(self) -> None:
        await self.sink.start()

    async def stop(self) -> None:
        await self.sink.stop()

    def counts(self) -> Mapping[str, float]:
        return self.stats.counts()

    def gauges(self) -> Mapping[str, float]:
        return self.stats.gauges()

    async def handle(self, batch: Batch) -> None:
        self.writes.batch_size.observe(len(batch.records))
        with self.writes.write_seconds.time():
            await deliver(
                self.sink, batch.records, batch.reject, self.backoff, self.stats, batch.ensure_owned
            )


def build_postgres(env: StageEnv) -> StageParts:
    pg = load_settings(PostgresSettings)
    phi = load_settings(PhiSettings)
    sink = PostgresSink(
        pg.dsn,
        keyring=phi.keyring(),  # refuses to start without PHI_ENCRYPTION_KEYS
        retention_s=phi.retention,
        sweep_interval_s=phi.sweep_interval,
        sweep_batch=phi.sweep_batch,
        pool_size=pg.pool_size,
        migrations_dsn=pg.migrations_dsn,
        extra_paths=phi.paths(),
        opener=stage_reader(env.kafka, phi),  # PHI_KAFKA_MASTER_KEYS when PHI_KAFKA_SEAL is on
    )
    streams = env.streams
    shape = Shape(streams.batch_max, streams.batch_within_s, done="written")
    clean = env.topics.clean_topics()
    writes = SinkWrites(sink.name)
    return StageParts(
        SinkHandler(sink, shape, streams.retry_max_backoff_s, writes),
        subscribe=[*clean, env.topics.retry(sink.name)],
        ready_on=clean,
        checks={"postgres": postgres_check(sink)},
        collectors=[RedactionCollector(sink.redacted), *writes.collectors()],
    )
