"""One fault per run under vendor-like load, then count: nothing acknowledged may be lost.

    python -m chaos.run [--scenario kafka|worker|...|stalled-smtp|all|kills] [--events 5000]
                        [--starve 2]

Each run starts its own stack (so it can kill any part of it), delivers
``--events`` visits (20% of them twice) at ``--rate`` per second with a
client that retries every non-2xx until it gets one, injects the fault at
30% of the load, waits for the pipeline to drain and checks the counts, and
that the ingress answered every request within the publish budget plus 1 s.
Gray faults (``chaos.gray``: a process stopped, a relay that never answers, a
full disk) also report how long after the fault ended everything drained and
how many restarts it took (0 unless the scenario allows and docs/operations.md says).
Prints a table and writes ``chaos/results/<scenario>.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import shutil
import sys
import tempfile
import time
import uuid
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from bench.report import machine, write_report
from chaos.answers import over_bound
from chaos.counts import drained, emails, rows
from chaos.faults import mount_tmpfs, unmount
from chaos.gray import data_mount, inject
from chaos.netns import Partition
from chaos.stack import PUBLISH_BUDGET_S, ChaosStack
from chaos.starve import starved
from chaos.vendor import ANSWER_TIMEOUT_S, deliver_all
from devstack import REPO
from devstack.kafka_cluster import KafkaCluster
from events.registry import VISIT_COMPLETED
from events.topics import Topics

DRAIN_TIMEOUT_S = 300.0
# A fault that outlasts the session timeout may cost each group a rebalance as members
# drop out and one as they come back. (Checked for gray faults: a kill's restarted worker
# counts from 0 again.)
REBALANCES_NOT_A_STORM = 3


@dataclass(frozen=True)
class Scenario:
    kills: tuple[str, ...]
    down_s: float
    email_worker_crashes: int = 0
    brokers: int = 1
    min_load_s: float = 0.0  # the cluster's faults take ~2 min: the load must last as long
    fault: str = "kill"  # or a gray fault of chaos.gray: pause, stall, fill
    allowed_restarts: int = 0  # restarts docs/operations.md documents
    tmpfs_mb: int = 0  # fill: the target's data directory on a tmpfs of this size


SCENARIOS = {
    "kafka": Scenario(("kafka",), 10),
    "worker": Scenario(("dedupe", "postgres", "email"), 1, email_worker_crashes=1),
    "postgres": Scenario(("postgres",), 5),
    "smtp": Scenario(("smtp",), 20),
    "ingress": Scenario(("ingress",), 1),
    # The busiest raw partition's leader SIGKILLed 5 times, then two of three brokers down.
    "cluster": Scenario((), 10, brokers=3, min_load_s=150),
    "hung-kafka": Scenario(("kafka",), 30, fault="pause"),
    "hung-postgres": Scenario(("postgres",), 30, fault="pause"),
    "stalled-smtp": Scenario(("smtp",), 30, fault="stall"),
    "full-kafka-disk": Scenario(("kafka",), 30, fault="fill", tmpfs_mb=256, allowed_restarts=1),
    "full-postgres-disk": Scenario(("postgres",), 30, fault="fill", tmpfs_mb=256),
    "partition": Scenario(("ingress",), 30, fault="partition"),
}
LEADER_KILLS = 5
KILLS = [name for name, s in SCENARIOS.items() if s.fault == "kill"]


async def _inject(
    stack: ChaosStack, scenario: Scenario, at: float, spans: list[float]
) -> dict[str, Any]:
    await asyncio.sleep(at)
    if scenario.fault != "kill":
        return await inject(stack, scenario.fault, scenario.kills[0], scenario.down_s)
    if stack.cluster is not None:
        return {"fault_ended": await _cluster_faults(stack.cluster, scenario, spans)}
    for name in scenario.kills:
        await stack.kill(name)
    await asyncio.sleep(scenario.down_s)
    for name in scenario.kills:
        await stack.restart(name)
    return {"fault_ended": time.monotonic()}


async def _cluster_faults(cluster: KafkaCluster, scenario: Scenario, spans: list[float]) -> float:
    topic = Topics().raw(VISIT_COMPLETED)
    busiest = await cluster.busiest_partition(topic)
    for _ in range(LEADER_KILLS):
        leader = await cluster.leader(topic, busiest)
        if leader in cluster.brokers:
            await asyncio.to_thread(cluster.kill, leader)
            await asyncio.sleep(2)
            await asyncio.to_thread(cluster.restart, leader)
        await asyncio.sleep(2)
    down = sorted(cluster.brokers)[:2]
    for node in down:
        await asyncio.to_thread(cluster.kill, node)
    spans.append(time.monotonic())  # from here only one broker: fewer in-sync replicas than 2
    await asyncio.sleep(scenario.down_s)
    spans.append(time.monotonic())
    for node in down:
        cluster.launch(node)
    for node in down:
        await asyncio.to_thread(cluster.brokers[node].wait_ready)
    return time.monotonic()


def _acked_while_below_min_isr(timeline: list[tuple[float, float, int]], spans: list[float]) -> int:
    """2xx answers to requests sent and answered while two of three brokers were down."""
    if len(spans) < 2:
        return 0
    down, up = spans
    return sum(
        1
        for sent, answered, status in timeline
        if sent >= down and answered <= up and 200 <= status < 300
    )


async def _drive(stack: ChaosStack, scenario: Scenario, events: int, rate: float) -> dict[str, Any]:
    prefix = f"gfe_chaos_{uuid.uuid4().hex[:6]}_"
    gfe_ids = [f"{prefix}{i}" for i in range(events)]
    url = stack.ingress_url + "/webhooks/visit-completed"
    load_s = events * 1.2 / rate
    spans: list[float] = []
    fault = asyncio.create_task(_inject(stack, scenario, 0.3 * load_s, spans))
    # A gray fault kills nothing on purpose: a pipeline process that exits is restarted
    # (as the kubelet would) and counted as a restart needed.
    supervisor = asyncio.create_task(stack.supervise()) if scenario.fault != "kill" else None
    rebalances = await asyncio.to_thread(stack.rebalances)
    # The client in a process of its own: here the fault injection's threads (brokers polled
    # until ready) would hold the GIL and stretch the client's own stopwatch by seconds.
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        log = await asyncio.get_running_loop().run_in_executor(
            pool, deliver_all, url, gfe_ids, rate
        )
    load_ended = time.monotonic()  # every delivery answered 2xx: no new acks from here
    acked = log.acked
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    # Watched while the fault may still last: a stage it does not touch drains meanwhile.
    drained_at = await drained(stack.dsn, prefix, acked, deadline)
    seen = await fault
    fault_ended = seen.pop("fault_ended")
    stored, duplicate_rows = await rows(stack.dsn, prefix)
    visits = acked & stored
    mails: Counter[str] = Counter()
    while time.monotonic() < deadline:
        mails = emails(stack.services.mail_dir, prefix)
        if all(mails[g] for g in visits):
            break
        await asyncio.sleep(1)
    mailed_at = time.monotonic()
    if supervisor is not None:
        supervisor.cancel()
    after = await asyncio.to_thread(stack.rebalances)
    statuses = Counter(log.statuses)
    ingress_seconds = stack.ingress_answer_seconds()
    return {
        "unique_events": events,
        "deliveries": log.deliveries,
        "answers": len(log.statuses),
        "answers_2xx": sum(n for s, n in statuses.items() if 200 <= s < 300),
        "answers_503": statuses[503],
        "answers_none": statuses[-1],
        "answers_other": sum(n for s, n in statuses.items() if s not in (-1, 503) and s >= 300),
        "slowest_answer_s": round(max(log.seconds), 3),
        "publish_budget_s": PUBLISH_BUDGET_S,
        # docs/contract.md: never an answer later than the publish budget plus 1 s, as the ingress
        # measures it (chaos.answers says why); the client's own count beside it.
        "ingress_answers": len(ingress_seconds),
        "slowest_ingress_answer_s": round(max(ingress_seconds, default=0.0), 3),
        "answers_over_budget_plus_1s": over_bound(ingress_seconds, PUBLISH_BUDGET_S),
        "client_answers_over_budget_plus_1s": over_bound(log.seconds, PUBLISH_BUDGET_S),
        "acknowledged_events": len(acked),
        "event_rows": len(stored),
        "acknowledged_but_lost": len(acked - stored),
        "duplicate_rows": duplicate_rows,
        "visits_without_email": sum(1 for g in visits if not mails[g]),
        "visits_with_extra_emails": sum(1 for g in visits if mails[g] > 1),
        # Drained: every acknowledged event in Postgres, which can only be told once the
        # load has ended; so also how long after the load's end that was.
        "drained_s_after_fault": round(drained_at - fault_ended, 1),
        "drained_s_after_load": round(drained_at - max(load_ended, fault_ended), 1),
        "emails_drained_s_after_fault": round(mailed_at - fault_ended, 1),
        "restarts_needed": len(stack.restarts),
        # A worker restarted by the supervisor counts from 0 again; restarts show it.
        "most_rebalances_in_a_worker": max(max(0, after[s] - rebalances[s]) for s in after),
        "restarted": ",".join(stack.restarts) or "-",
        **seen,
        **(
            {
                "leader_kills": LEADER_KILLS,
                "answers_while_two_brokers_down": sum(
                    1
                    for sent, answered, _ in log.timeline
                    if len(spans) == 2 and sent >= spans[0] and answered <= spans[1]
                ),
                "acked_below_min_isr": _acked_while_below_min_isr(log.timeline, spans),
            }
            if stack.cluster is not None
            else {}
        ),
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
    if result["answers_over_budget_plus_1s"]:
        problems.append(
            f"{result['answers_over_budget_plus_1s']} answers over budget + 1 s (slowest "
            f"{result['slowest_ingress_answer_s']} s, budget {result['publish_budget_s']} s)"
        )
    if not result["ingress_answers"]:
        problems.append("no answer in the ingress's access log: the bound went unchecked")
    if result["visits_without_email"]:
        problems.append(f"{result['visits_without_email']} visits without their email")
    if result.get("acked_below_min_isr"):
        problems.append(f"{result['acked_below_min_isr']} 2xx while two of three brokers were down")
    if result["visits_with_extra_emails"] > scenario.email_worker_crashes:
        problems.append(f"{result['visits_with_extra_emails']} visits emailed more than once")
    if scenario.fault != "kill" and result["most_rebalances_in_a_worker"] > REBALANCES_NOT_A_STORM:
        problems.append(f"a rebalance storm: {result['most_rebalances_in_a_worker']} in a worker")
    if result["restarts_needed"] > scenario.allowed_restarts:
        problems.append(f"restarts needed: {result['restarted']}")
    return problems


def run(
    name: str,
    events: int,
    rate: float,
    fault_s: float | None = None,
    starve: int = 0,
    keep_logs: Path | None = None,
) -> dict[str, Any]:
    """One scenario; ``fault_s`` shortens (or lengthens) its fault, e.g. for CI.

    ``starve``: that many busy processes compete for the CPU throughout.
    ``keep_logs``: where a run whose promise broke leaves its services' logs.
    """
    scenario = SCENARIOS[name]
    if fault_s is not None:
        scenario = replace(scenario, down_s=fault_s)
    with (
        tempfile.TemporaryDirectory(prefix=f"spakinect-chaos-{name}-") as tmp,
        starved(starve) as spinners,
    ):
        partition = Partition() if scenario.fault == "partition" else None
        stack = ChaosStack(Path(tmp), REPO / ".cache", scenario.brokers, partition)
        mount = data_mount(scenario.kills[0], Path(tmp)) if scenario.tmpfs_mb else None
        try:
            if mount is not None:
                mount_tmpfs(mount, scenario.tmpfs_mb)
            if partition is not None:
                partition.create()
            stack.start()
            time.sleep(8)  # let the workers join their groups before the load
            if scenario.min_load_s:
                rate = min(rate, events * 1.2 / scenario.min_load_s)
            result = asyncio.run(_drive(stack, scenario, events, rate))
        finally:
            stack.stop()
            if mount is not None:
                unmount(mount)
            if partition is not None:
                partition.delete()
        if keep_logs is not None and failures(result, scenario):
            shutil.rmtree(keep_logs, ignore_errors=True)
            shutil.copytree(Path(tmp), keep_logs, ignore=shutil.ignore_patterns("data", "pg*"))
    where = {"all": "Kafka, Postgres, SMTP catcher, ingress, 3 workers, client: this host"}
    return {
        "scenario": name,
        "fault_s": scenario.down_s,
        "cpu_starving_processes": spinners,
        **result,
        "rate": rate,
        **machine(where),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all", "kills"], default="all")
    parser.add_argument("--events", type=int, default=5000)
    parser.add_argument("--rate", type=float, default=100, help="deliveries per second")
    parser.add_argument("--out", type=Path, default=REPO / "chaos" / "results")
    parser.add_argument(
        "--starve",
        type=int,
        default=0,
        help="busy processes competing for the CPU during each run (2 saturate this box)",
    )
    args = parser.parse_args()
    names = {"all": list(SCENARIOS), "kills": KILLS}.get(args.scenario, [args.scenario])
    broken = []
    suffix = "-starved" if args.starve else ""
    for name in names:
        logs = args.out / f"{name}{suffix}-logs"
        result = run(name, args.events, args.rate, starve=args.starve, keep_logs=logs)
        write_report(result, args.out / f"{name}{suffix}.json")
        problems = failures(result, SCENARIOS[name])
        print(f"{name}: " + ("; ".join(problems) if problems else "promise held"), flush=True)
        broken += [f"{name}: {p}" for p in problems]
    sys.exit(1 if broken else 0)


if __name__ == "__main__":
    main()
