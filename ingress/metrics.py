"""Prometheus metrics of the ingress. Labels carry routes, statuses and reasons, never values."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from events.registry import EVENT_TYPES


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
                "ingress_in_flight_requests", "Requests being handled", registry=registry
            ),
        )
        # Exported at 0 from the start, so "no event for 3 hours" is visible after a restart.
        for event in EVENT_TYPES:
            metrics.events.labels(event)
        return metrics
