"""The alert rules and the dashboard: promtool checks and tests them, and their shape is sound."""

from __future__ import annotations

import pytest
import yaml

from tests.observability import (
    ALERTS,
    PROMETHEUS,
    alert_rules,
    metric_names,
    promtool,
)


def test_promtool_accepts_the_rules_and_the_compose_scrape_config():
    assert "SUCCESS" in promtool("check", "rules", str(ALERTS))
    assert "SUCCESS" in promtool("check", "config", str(PROMETHEUS / "prometheus.yml"))


def test_promtool_unit_tests_of_every_alert_pass():
    assert "SUCCESS" in promtool("test", "rules", str(PROMETHEUS / "alerts.test.yml"))


def test_every_alert_has_a_test_that_fires_it_and_one_that_keeps_it_quiet():
    tests = yaml.safe_load((PROMETHEUS / "alerts.test.yml").read_text())["tests"]
    fired: set[str] = set()
    quiet: set[str] = set()
    for test in tests:
        for case in test["alert_rule_test"]:
            (fired if case.get("exp_alerts") else quiet).add(case["alertname"])
    alerts = {rule["alert"] for rule in alert_rules()}
    assert alerts - fired == set(), "alerts no test makes fire"
    assert alerts - quiet == set(), "alerts no test keeps quiet"


def test_every_alert_says_what_it_means_what_to_check_and_how_bad_it_is():
    for rule in alert_rules():
        annotations = rule["annotations"]
        assert {"summary", "description", "runbook"} <= set(annotations), rule["alert"]
        assert rule["labels"]["severity"] in ("page", "ticket"), rule["alert"]
    runbooks = {rule["alert"]: rule["annotations"]["runbook"] for rule in alert_rules()}
    assert "spakinect-pipeline rejected replay" in runbooks["SpakinectBodiesRefused"]
    assert "spakinect-pipeline dlq list" in runbooks["SpakinectDlqGrowing"]
    assert "spakinect-pipeline dlq replay" in runbooks["SpakinectDlqGrowing"]


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        (
            'sum by (stage) (rate(streams_events_total{outcome="x"}[5m])) * 3600',
            {"streams_events_total"},
        ),
        (
            "histogram_quantile(0.9, sum by (le) (rate(ingress_publish_seconds_bucket[$__range])))",
            {"ingress_publish_seconds_bucket"},
        ),
        ("a_total / ignoring(name) b > 1e3 and on() hour() >= 16", {"a_total", "b"}),
        ('absent(up{job=~"spakinect-.*"} == 0)', {"up"}),
    ],
)
def test_metric_names_are_read_out_of_promql(expr: str, names: set[str]):
    assert metric_names(expr) == names
