"""Prometheus metrics of the ingress. Labels carry routes, statuses and reasons, never values."""

from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from events.registry import EVENT_TYPES

# Set (before prometheus_client is imported) when several ingress processes share a port:
# see ingress.workers.
MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """The folder the worker processes share, or None: unset and empty both mean one process
    (as prometheus_client itself reads the variable)."""
    return os.environ.get(MULTIPROCESS_DIR) or None


def reset_multiprocess_dir(path: str) -> None:
    """Create the folder and empty it of a previous run's files, whose counters would
    otherwise be summed into this run's."""
    os.makedirs(path, exist_ok=True)
    for stale in glob.glob(os.path.join(path, "*.db")):
        os.remove(stale)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def drop_dead_live_gauges(path: str) -> None:
    """Remove the live-gauge files of processes that are gone (a worker killed mid-request
    never ran its shutdown), so "in flight" sums live workers only."""
    from prometheus_client import multiprocess

    for gauge in glob.glob(os.path.join(path, "gauge_live*_*.db")):
        pid = gauge.rsplit("_", 1)[1].removesuffix(".db")
        if pid.isdigit() and not pid_alive(int(pid)):
            multiprocess.mark_process_dead(int(pid), path)  # type: ignore[no-untyped-call]


def process_stopped() -> None:
    """Take this process's live gauges (requests in flight) out of the shared folder."""
    path = multiprocess_dir()
    if path is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(os.getpid(), path)  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class IngressMetrics:
    """One registry per app, so tests and benchmarks can build several apps in a process."""

    registry: CollectorRegistry
    requests: Counter
    publish_seconds: Histogram
    events: Counter
    auth_failures: Counter
    rejected: Counter
    unrouted: Counter
    in_flight: Gauge
    # Labelled children by label values: ``labels()`` takes a lock and builds a key on
    # every call; the hot path's few label sets are looked up here instead.
    _children: dict[tuple[Any, ...], Any] = field(default_factory=dict)

    def _child(self, metric: Any, *values: str) -> Any:
        key = (id(metric), *values)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*values)
        return child

    def exposition(self) -> bytes:
        """Prometheus text of this app's metrics, summed over every worker process if several."""
        path = multiprocess_dir()
        if path is None:
            return bytes(generate_latest(self.registry))
        from prometheus_client import multiprocess

        drop_dead_live_gauges(path)
        workers = CollectorRegistry()
        multiprocess.MultiProcessCollector(workers, path)  # type: ignore[no-untyped-call]
        return bytes(generate_latest(workers))

    def request_done(self, route: str, status: int) -> None:
        self._child(self.requests, route, str(status)).inc()

    def published(self, topic: str, seconds: float) -> None:
        self._child(self.publish_seconds, topic).observe(seconds)

    def event_accepted(self, event: str) -> None:
        self._child(self.events, event).inc()

    @classmethod
    def create(cls) -> IngressMetrics:
        registry = CollectorRegistry()
        metrics = cls(
            registry=registry,
            requests=Counter(
                "ingress_requests_total",
                "HTTP requests by route and status",
                ["route", "status"],
                registry=registry,
            ),
            publish_seconds=Histogram(
                "ingress_publish_seconds",
                "Time until Kafka acknowledged a write",
                ["topic"],
                buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 8),
                registry=registry,
            ),
            events=Counter(
                "ingress_events_total", "Events accepted, by type", ["event"], registry=registry
            ),
            auth_failures=Counter(
                "ingress_auth_failures_total",
                "Refused at steps 1, 2, 5",
                ["reason"],
                registry=registry,
            ),
            rejected=Counter(
                "ingress_rejected_total",
                "Bodies refused at steps 6-8",
                ["reason"],
                registry=registry,
            ),
            unrouted=Counter(
                "ingress_unrouted_total", "Events of an unknown type", registry=registry
            ),
            in_flight=Gauge(
                "ingress_in_flight_requests",
                "Requests being handled",
                registry=registry,
                multiprocess_mode="livesum",  # the sum over live workers
            ),
        )
        # Exported at 0 from the start, so "no event for 3 hours" is visible after a restart.
        for event in EVENT_TYPES:
            metrics.events.labels(event)
        return metrics
