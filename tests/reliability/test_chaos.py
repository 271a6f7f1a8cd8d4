"""The short version of ``make chaos`` (scenarios 1-3, a few hundred events) for CI."""

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
