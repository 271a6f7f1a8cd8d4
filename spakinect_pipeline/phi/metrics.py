"""``phi_redacted_rows_total{table, reason}``: patient fields the Postgres stage erased."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector


class RedactionCollector(Collector):
    """Reads the sink's counts at scrape time; reasons: ``retention`` (the sweep) and
    ``written_redacted`` (a row stored redacted: forgotten patient or past retention)."""

    def __init__(self, counts: Mapping[tuple[str, str], int]) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "phi_redacted_rows",
            "Rows whose patient fields the Postgres stage redacted",
            labels=["table", "reason"],
        )
        for table in ("gfe_visits", "spakinect_events"):
            for reason in ("retention", "written_redacted"):
                family.add_metric([table, reason], self.counts.get((table, reason), 0))
        yield family
