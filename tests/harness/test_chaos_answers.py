"""The chaos harness's check of the contract's bound: answers within the publish budget plus 1 s."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chaos.answers import ingress_answer_seconds, over_bound
from chaos.run import SCENARIOS, failures


def access(path: str, ms: float, status: int = 200) -> str:
    return json.dumps(
        {"event": "request", "method": "POST", "path": path, "status": status, "duration_ms": ms}
    )


def test_webhook_answers_are_read_from_the_access_log_and_nothing_else() -> None:
    lines = [
        access("/webhooks/visit-completed", 5123.4, 503),
        access("/webhooks", 12.0),
        access("/readyz", 9000.0),  # not an answer to the vendor
        json.dumps({"event": "event stored", "duration_ms": 9000.0}),
        'Traceback (most recent call last): "request"',
        json.dumps({"event": "request", "path": "/webhooks", "duration_ms": "slow"}),
    ]
    assert ingress_answer_seconds(lines) == pytest.approx([5.1234, 0.012])


def test_only_answers_later_than_budget_plus_one_second_count() -> None:
    assert over_bound([5.0, 6.0, 6.001, 7.5], budget_s=5.0) == 2


def result(**changes: Any) -> dict[str, Any]:
    clean = {
        "unique_events": 10,
        "acknowledged_events": 10,
        "acknowledged_but_lost": 0,
        "duplicate_rows": 0,
        "slowest_answer_s": 7.9,
        "publish_budget_s": 5.0,
        "ingress_answers": 12,
        "slowest_ingress_answer_s": 5.4,
        "answers_over_budget_plus_1s": 0,
        "visits_without_email": 0,
        "visits_with_extra_emails": 0,
        "restarts_needed": 0,
        "restarted": "-",
        "most_rebalances_in_a_worker": 1,
    }
    return clean | changes


def test_the_run_fails_when_the_ingress_answered_later_than_budget_plus_one_second() -> None:
    assert failures(result(), SCENARIOS["cluster"]) == []
    (problem,) = failures(
        result(answers_over_budget_plus_1s=3, slowest_ingress_answer_s=6.6), SCENARIOS["cluster"]
    )
    assert problem == "3 answers over budget + 1 s (slowest 6.6 s, budget 5.0 s)"


def test_the_run_fails_when_the_bound_could_not_be_checked() -> None:
    assert failures(result(ingress_answers=0), SCENARIOS["kafka"]) == [
        "no answer in the ingress's access log: the bound went unchecked"
    ]


def test_a_gray_fault_fails_on_a_restart_unless_the_scenario_documents_it() -> None:
    assert failures(result(restarts_needed=1, restarted="email"), SCENARIOS["hung-kafka"]) == [
        "restarts needed: email"
    ]
    # A broker shuts itself down on a full log dir: one restart, documented in docs/operations.md.
    assert (
        failures(result(restarts_needed=1, restarted="kafka"), SCENARIOS["full-kafka-disk"]) == []
    )
    assert failures(
        result(restarts_needed=2, restarted="kafka,email"), SCENARIOS["full-kafka-disk"]
    )


def test_a_gray_fault_fails_on_a_rebalance_storm_a_kill_is_not_judged_by_it() -> None:
    assert failures(result(most_rebalances_in_a_worker=3), SCENARIOS["hung-kafka"]) == []
    assert failures(result(most_rebalances_in_a_worker=4), SCENARIOS["hung-kafka"]) == [
        "a rebalance storm: 4 in a worker"
    ]
    assert failures(result(most_rebalances_in_a_worker=4), SCENARIOS["kafka"]) == []
