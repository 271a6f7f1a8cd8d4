"""One fault per run under vendor-like load, then count: nothing acknowledged may be lost.

    python -m chaos.run [--scenario kafka|worker|postgres|smtp|ingress|all] [--events 5000]

Each run starts its own stack (so it can kill any part of it), delivers
``--events`` visits (20% of them twice) at ``--rate`` per second with a
client that retries every non-2xx until it gets one, injects the fault at
30% of the load, waits for the pipeline to drain and checks the counts.
Prints a table and writes ``chaos/results/<scenario>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bench.report import REPO, machine, write_report
from chaos.stack import CLINIC, ChaosStack
from chaos.vendor import ANSWER_TIMEOUT_S, Vendor

DRAIN_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class Scenario:
    kills: tuple[str, ...]
    down_s: float
    email_worker_crashes: int = 0


SCENARIOS = {
    "kafka": Scenario(("kafka",), 10),
    "worker": Scenario(("dedupe", "postgres", "email"), 1, email_worker_crashes=1),
    "postgres": Scenario(("postgres",), 5),
    "smtp": Scenario(("smtp",), 20),
    "ingress": Scenario(("ingress",), 1),
}


async def _rows(dsn: str, prefix: str) -> tuple[set[str], int]:
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            "SELECT entity_id FROM spakinect_events WHERE entity_id LIKE $1", prefix + "%"
        )
    finally:
        await conn.close()
    ids = [r["entity_id"] for r in rows]
    return set(ids), len(ids) - len(set(ids))


def _emails(mail_dir: Path, prefix: str) -> Counter[str]:
    sent: Counter[str] = Counter()
    for path in mail_dir.glob("*.eml"):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if CLINIC not in str(message.get("X-Envelope-To", "")):
            continue
        subject = str(message.get("Subject", ""))
        for word in subject.split():
            if word.startswith(prefix):
                sent[word] += 1
    return sent


async def _inject(stack: ChaosStack, scenario: Scenario, at: float) -> float:
    await asyncio.sleep(at)
    for name in scenario.kills:
        await stack.kill(name)
    await asyncio.sleep(scenario.down_s)
    for name in scenario.kills:
        await stack.restart(name)
    return time.monotonic()


async def _drive(stack: ChaosStack, scenario: Scenario, events: int, rate: float) -> dict[str, Any]:
    prefix = f"gfe_chaos_{uuid.uuid4().hex[:6]}_"
    gfe_ids = [f"{prefix}{i}" for i in range(events)]
    vendor = Vendor(stack.ingress_url + "/webhooks/visit-completed")
    load_s = events * 1.2 / rate
    fault = asyncio.create_task(_inject(stack, scenario, 0.3 * load_s))
    await vendor.run(gfe_ids, rate)
    fault_ended = await fault
    acked = vendor.log.acked
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        stored, duplicate_rows = await _rows(stack.dsn, prefix)
        if acked <= stored or time.monotonic() > deadline:
            break
        await asyncio.sleep(1)
    drained_s = time.monotonic() - fault_ended
    visits = acked & stored
    mails: Counter[str] = Counter()
    while time.monotonic() < deadline:
        mails = _emails(stack.services.mail_dir, prefix)
        if all(mails[g] for g in visits):
            break
        await asyncio.sleep(1)
    statuses = Counter(vendor.log.statuses)
    return {
        "unique_events": events,
        "deliveries": vendor.log.deliveries,
        "answers": len(vendor.log.statuses),
        "answers_2xx": sum(n for s, n in statuses.items() if 200 <= s < 300),
        "answers_503": statuses[503],
        "answers_none": statuses[-1],
        "answers_other": sum(n for s, n in statuses.items() if s not in (-1, 503) and s >= 300),
        "slowest_answer_s": round(max(vendor.log.seconds), 3),
        "acknowledged_events": len(acked),
        "event_rows": len(stored),
        "acknowledged_but_lost": len(acked - stored),
        "duplicate_rows": duplicate_rows,
        "visits_without_email": sum(1 for g in visits if not mails[g]),
        "visits_with_extra_emails": sum(1 for g in visits if mails[g] > 1),
        "drained_s_after_fault": round(drained_s, 1),
    }


def failures(result: dict[str, Any], scenario: Scenario) -> list[str]:
    """What the run broke of the promise (empty when it held)."""
    problems = []
    if result["acknowledged_but_lost"]:
        problems.append(f"{result['acknowledged_but_lost']} acknowledged events lost")
    if result["duplicate_rows"]:
        problems.append(f"{result['duplicate_rows']} duplicate rows")
    if result["acknowledged_events"] != result["unique_events"]:
        problems.append("not every event was acknowledged in the end")
    if result["slowest_answer_s"] >= ANSWER_TIMEOUT_S:
        problems.append(f"an answer took {result['slowest_answer_s']} s")
    if result["visits_without_email"]:
        problems.append(f"{result['visits_without_email']} visits without their email")
    if result["visits_with_extra_emails"] > scenario.email_worker_crashes:
        problems.append(f"{result['visits_with_extra_emails']} visits emailed more than once")
    return problems


def run(name: str, events: int, rate: float) -> dict[str, Any]:
    scenario = SCENARIOS[name]
    with tempfile.TemporaryDirectory(prefix=f"spakinect-chaos-{name}-") as tmp:
        stack = ChaosStack(Path(tmp), REPO / ".cache")
        try:
            stack.start()
            time.sleep(8)  # let the workers join their groups before the load
            result = asyncio.run(_drive(stack, scenario, events, rate))
        finally:
            stack.stop()
    where = {"all": "Kafka, Postgres, SMTP catcher, ingress, 3 workers, client: this host"}
    return {"scenario": name, **result, "rate": rate, **machine(where)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=100, help="deliveries per second")
    parser.add_argument("--out", type=Path, default=REPO / "chaos" / "results")
    args = parser.parse_args()
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    broken = []
    for name in names:
        result = run(name, args.events, args.rate)
        write_report(result, args.out / f"{name}.json")
        problems = failures(result, SCENARIOS[name])
        print(f"{name}: " + ("; ".join(problems) if problems else "promise held"), flush=True)
        broken += [f"{name}: {p}" for p in problems]
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
