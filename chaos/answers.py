"""How long the ingress itself took to answer, read from its own access log.

The contract (docs/contract.md) bounds the answer by the publish budget plus 1 s from the moment the
ingress has the request. The load client's stopwatch also counts its own
scheduling and the wait before the ingress reads the request, which on a
starved machine (three JVMs, the client and the ingress on two cores) can be
many seconds the ingress never saw: so the bound is checked on the ingress's
own ``duration_ms`` per webhook request, and the client's figures are
reported beside it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

WEBHOOK_PATH = "/webhooks"


def ingress_answer_seconds(log_lines: Iterable[str]) -> list[float]:
    """Seconds per answered webhook request, from the ingress's JSON access-log lines."""
    seconds = []
    for line in log_lines:
        if '"request"' not in line:
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # a line of another format (a crash trace, a library's warning)
        if (
            isinstance(entry, dict)
            and entry.get("event") == "request"
            and str(entry.get("path", "")).startswith(WEBHOOK_PATH)
            and isinstance(entry.get("duration_ms"), int | float)
        ):
            seconds.append(entry["duration_ms"] / 1000)
    return seconds


def over_bound(seconds: Iterable[float], budget_s: float) -> int:
    """How many answers came later than the budget plus 1 s."""
    return sum(1 for s in seconds if s > budget_s + 1)
