"""Worker metrics on ``STREAMS_WEB_PORT`` (``GET /metrics``, Prometheus text).

Counters are read at scrape time from what the stages already count (no
second bookkeeping); histograms are observed where the work happens. Labels
carry stage, outcome, topic and partition — never ids or patient data.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import faust
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from streams.faust_adapter import StrictConsumer, messages_behind

Counts = Callable[[], Mapping[str, float]]
MEDIA_TYPE = CONTENT_TYPE_LATEST.split(";", 1)[0]


def consumer_lag(app: faust.App) -> Iterator[tuple[str, int, int]]:
    """(topic, partition, messages not yet committed) for each assigned partition."""
    try:
        consumer = app.consumer
        assigned = consumer.assignment()
    except Exception:  # noqa: BLE001 - not started or rebalancing: no lag to report now
        return
    committed: Mapping[Any, Any] = (
        consumer.committed_offsets() if isinstance(consumer, StrictConsumer) else {}
    )
    for tp in sorted(assigned):
        lag = messages_behind(consumer, tp, committed.get(tp))
        if lag is not None:
            yield tp.topic, tp.partition, lag


def time_behind(app: faust.App, now: float) -> Iterator[tuple[str, int, float]]:
    """(topic, partition, age of its oldest unprocessed message) for each source partition."""
    try:
        consumer = app.consumer
        ages = list(consumer.time_behind(now)) if isinstance(consumer, StrictConsumer) else []
    except Exception:  # noqa: BLE001 - not started or rebalancing: nothing to report now
        return
    for tp, seconds in ages:
        yield tp.topic, tp.partition, seconds


def offset_resets(app: faust.App) -> Mapping[tuple[str, int], int]:
    try:
        consumer = app.consumer
    except Exception:  # noqa: BLE001 - not started: nothing to report
        return {}
    return dict(consumer.offset_resets) if isinstance(consumer, StrictConsumer) else {}


class StageCollector(Collector):
    """Exports a stage's counts and its consumer lag when scraped."""

    def __init__(self, app: faust.App, stage: str, counts: Counts, gauges: Counts) -> None:
        self.app = app
        self.stage = stage
        self.counts = counts
        self.gauges = gauges

    def collect(self) -> Iterator[Metric]:
        events = CounterMetricFamily(
            "streams_events", "Events handled by outcome", labels=["stage", "outcome"]
        )
        for outcome, value in self.counts().items():
            events.add_metric([self.stage, outcome], value)
        yield events
        gauges = GaugeMetricFamily(
            "streams_state", "Current state values of the stage", labels=["stage", "name"]
        )
        for name, value in self.gauges().items():
            gauges.add_metric([self.stage, name], value)
        yield gauges
        lag = GaugeMetricFamily(
            "streams_consumer_lag",
            "Messages not yet committed",
            labels=["stage", "topic", "partition"],
        )
        for topic, partition, value in consumer_lag(self.app):
            lag.add_metric([self.stage, topic, str(partition)], value)
        yield lag
        behind = GaugeMetricFamily(
            "streams_time_behind_seconds",
            "Age of the oldest event not yet processed (0 when none waits)",
            labels=["stage", "topic", "partition"],
        )
        for topic, partition, seconds in time_behind(self.app, time.time()):
            behind.add_metric([self.stage, topic, str(partition)], seconds)
        yield behind
        resets = CounterMetricFamily(
            "streams_offset_resets",
            "Times a committed offset older than the log start was moved to it (data lost "
            "to retention before the stage read it)",
            labels=["stage", "topic", "partition"],
        )
        for (topic, partition), n in offset_resets(self.app).items():
            resets.add_metric([self.stage, topic, str(partition)], n)
        yield resets


class StageMetrics:
    """One registry per worker process, served by Faust's web server."""

    def __init__(
        self, app: faust.App, stage: str, counts: Counts, gauges: Counts | None = None
    ) -> None:
        self.registry = CollectorRegistry()
        self.registry.register(StageCollector(app, stage, counts, gauges or dict))

        @app.page("/metrics")
        async def metrics(web: Any, request: Any) -> Any:
            # aiohttp wants the media type without its charset; the text is UTF-8 anyway.
            return web.bytes(generate_latest(self.registry), content_type=MEDIA_TYPE)


class SinkWrites:
    """``sink_batch_size`` and ``sink_write_seconds`` of a sink stage, observed around its writes.

    The sink handler observes them around the write itself, so undecodable
    messages, dead letters and spans count in neither.
    """

    def __init__(self, stage: str) -> None:
        self.sizes = Histogram(
            "sink_batch_size",
            "Records per sink write",
            ["stage"],
            registry=None,
            buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
        )
        self.seconds = Histogram(
            "sink_write_seconds",
            "Time to write (and commit) one batch, retries included",
            ["stage"],
            registry=None,
            buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 5, 30, 120),
        )
        self.batch_size = self.sizes.labels(stage)
        self.write_seconds = self.seconds.labels(stage)

    def collectors(self) -> tuple[Collector, ...]:
        return (self.sizes, self.seconds)
