"""The Grafana dashboard: its queries parse and it has the panels operators need."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from tests.observability import (
    ALERTS,
    DASHBOARD,
    all_exprs,
    dashboard,
    dashboard_exprs,
    metric_names,
    promtool,
)


def test_dashboard_queries_parse(tmp_path: Path):
    # promtool parses PromQL: every panel query as a recording rule, Grafana's interval fixed.
    rules = [
        {"record": f"dashboard:query_{i}", "expr": expr.replace("$__rate_interval", "5m")}
        for i, expr in enumerate(dashboard_exprs())
    ]
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    assert f"SUCCESS: {len(rules)} rules found" in promtool("check", "rules", str(path))


def test_dashboard_has_the_panels_operators_need_on_the_provisioned_datasource():
    board = dashboard()
    panels = [p for p in board["panels"] if p["type"] != "row"]
    titles = " | ".join(p["title"] for p in panels).lower()
    for needed in (
        "webhook requests by route and status",
        "events accepted by type",
        "publish latency",
        "refused bodies by reason",
        "time behind",
        "throughput",
        "dead letters",
        "emails",
        "dedupe outcomes",
    ):
        assert needed in titles
    for panel in panels:
        assert panel["description"], panel["title"]
        assert panel["targets"], panel["title"]
        assert panel["datasource"]["uid"] == "${datasource}"
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    datasource = yaml.safe_load(
        (DASHBOARD.parents[1] / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"][0]
    variable = board["templating"]["list"][0]
    assert variable["current"]["value"] == datasource["uid"]


def test_rules_and_dashboard_name_only_pipeline_metrics():
    names = set().union(*(metric_names(expr) for expr in all_exprs()))
    prefixes = ("ingress_", "streams_", "sink_")
    assert {n for n in names if not n.startswith(prefixes)} == {"up"}
    assert "streams_time_behind_seconds" in names
    assert re.search(r"streams_time_behind_seconds", ALERTS.read_text())


def test_exported_names_cover_sample_suffixes_also_of_families_without_samples():
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

    from tests.observability import exported_names

    registry = CollectorRegistry()
    Counter("a_total", "labelled, never incremented", ["reason"], registry=registry)
    Histogram("b_seconds", "observed", registry=registry).observe(1)
    Gauge("c", "set", registry=registry).set(2)
    names = exported_names(generate_latest(registry).decode())
    assert {"a_total", "b_seconds_bucket", "b_seconds_sum", "b_seconds_count", "c"} <= names
    assert "d" not in names
    assert "b_seconds" not in names
