"""The short version of ``make chaos`` for CI: a few hundred events per scenario.

Kills (Kafka, a worker set, Postgres) and gray faults (Kafka and Postgres
stopped with sockets open, an SMTP relay that accepts and never answers),
the gray ones shortened from 30 s to just past the timeout each must hit.
"""

from __future__ import annotations

import pytest

from chaos.run import SCENARIOS, failures, run

pytestmark = pytest.mark.integration


@pytest.mark.timeout(600)
@pytest.mark.parametrize("scenario", ["kafka", "worker", "postgres"])
def test_nothing_acknowledged_is_lost_when(scenario: str) -> None:
    result = run(scenario, events=300, rate=60)
    assert result["acknowledged_events"] == 300
    assert failures(result, SCENARIOS[scenario]) == [], result
    if scenario == "kafka":
        assert result["answers_503"] > 0  # the fault really hit the ingress


# Past the publish budget (5 s) and the SMTP timeout (15 s) each; the full runs stop 30 s.
GRAY = {"hung-kafka": 10.0, "hung-postgres": 10.0, "stalled-smtp": 20.0}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("scenario", list(GRAY))
def test_nothing_acknowledged_is_lost_and_nothing_restarted_when(scenario: str) -> None:
    result = run(scenario, events=300, rate=60, fault_s=GRAY[scenario])
    assert result["acknowledged_events"] == 300
    assert failures(result, SCENARIOS[scenario]) == [], result
    assert result["restarts_needed"] == 0
    assert result["answers_over_budget_plus_1s"] == 0
    if scenario == "hung-kafka":
        assert result["answers_503"] > 0  # the ingress said so in time, then took them all
    elif scenario == "hung-postgres":
        assert result["postgres_readyz_during_fault"] == 503
    else:
        assert result["stalled_smtp_connections"] > 0  # the email stage really waited on it
        assert result["email_readyz_during_fault"] == 503
        assert result["drained_s_after_fault"] < 0  # the Postgres stage never waited for it
