"""End-to-end latency and where duplicates are dropped, on the real local stack.

Starts ``python -m devstack up`` on free ports in a temporary folder, posts N
distinct visits (plus a share of duplicate deliveries, as the vendor's
retries would) at a steady rate, waits until every event row is in Postgres,
then reports envelope ``received_at`` → row ``inserted_at`` (both server
clocks), how many duplicates the dedupe stage vs the sinks dropped, and CPU
per delivery (:mod:`bench.cpu`): core-ms of every process of the stack
(ingress, each worker, Kafka, the Postgres server with its backends, the
SMTP catcher) and of this process, the load generator, from the first post
until every row is in. The email stage sends at its deployed pace
(``EMAIL_RATE_LIMIT_PER_MIN``, 120/min), so at live rates its emails go out
long after; ``--emails`` lifts the cap and costs the email worker and the
SMTP catcher per email until every visit's email is in (they then compete
with the pipeline for the two cores). The stack runs as deployed
(``LOG_LEVEL=INFO``, JSON logs, metrics on). The load generator is aiohttp
with the bodies serialised beforehand: on two cores a heavier client would
take the stack's CPU.

Before the measured load, rounds of ``--warm-up N`` visits (default 10 s worth)
go through the same stack untimed at the same rate until the broker's JIT
compilers settle (:mod:`bench.jit`): a fresh broker JVM spends most of its CPU
compiling its request path for the first minute of live traffic here, and a
short run would otherwise charge that to the live path (production brokers
are warm). ``--baseline REF`` runs the same
load against the stack from git ``REF``'s tree right after (``baseline`` in the
output, with ratios): before/after in one run.

    python -m bench.e2e_latency [--events 200] [--rate 50] [--duplicates 0.2] [--baseline REF]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import orjson

from bench.baseline import DEPLOYED_ENV, checkout, tree_env
from bench.cpu import CpuMeter, children_by_name, classify_by_cmdline, cpu_columns, spent
from bench.jit import compiler_cpu_s
from bench.report import machine, percentile, write_report
from devstack import REPO
from devstack.background import running_stack
from events.registry import VISIT_COMPLETED
from events.samples import sample_visit
from events.topics import Topics


async def count_topic(bootstrap: str, topic: str) -> int:
    from aiokafka import AIOKafkaConsumer

    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        total = 0
        while batch := await consumer.getmany(timeout_ms=1500):
            total += sum(len(messages) for messages in batch.values())
        return total
    finally:
        await consumer.stop()


def count_mails(mail_dir: Path) -> int:
    """Emails the SMTP catcher saved (one file each; a directory listing, no reads)."""
    return len(os.listdir(mail_dir)) if mail_dir.exists() else 0


def _is_cli(argv: list[str]) -> bool:
    return "cli.main" in argv or "spakinect_pipeline.cli" in argv


def _is_stage(stage: str) -> Callable[[list[str]], bool]:
    return lambda argv: _is_cli(argv) and argv[-2:] == ["worker", stage]


STACK_PROCESSES = classify_by_cmdline(
    {
        "ingress": lambda argv: _is_cli(argv) and argv[-1:] == ["ingress"],
        **{f"{stage}_worker": _is_stage(stage) for stage in ("dedupe", "postgres", "email")},
        "kafka": lambda argv: "kafka.Kafka" in argv,
        "postgres_server": lambda argv: bool(argv) and argv[0].endswith("/postgres"),
        "smtp_catcher": lambda argv: "devstack.smtp_catcher" in argv,
    }
)


def this_process_cpu_s() -> float:
    """This process's CPU seconds: the load generator's (the HTTP client runs here)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def drive(
    env: dict[str, str],
    events: int,
    rate: float,
    dup_share: float,
    meter: CpuMeter,
    emails: bool = False,
) -> dict[str, Any]:
    run = uuid.uuid4().hex[:6]
    bodies = [sample_visit(f"gfe_bench_{run}_{i}") for i in range(events)]
    deliveries = bodies + random.sample(bodies, int(events * dup_share))
    random.shuffle(deliveries)
    url = env["INGRESS_URL"] + "/webhooks/visit-completed"
    payloads = [orjson.dumps(body) for body in deliveries]
    headers = {"Content-Type": "application/json", "User-Agent": "Spakinect-Webhook/1.0"}
    statuses: list[int] = []
    answer_ms: list[float] = []
    topics = Topics()
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    raw_before = await count_topic(bootstrap, topics.raw(VISIT_COMPLETED))  # a warm-up's
    clean_before = await count_topic(bootstrap, topics.clean(VISIT_COMPLETED))
    mail_dir = Path(env["MAIL_DIR"])
    mails_before = count_mails(mail_dir)
    before = meter.snapshot() | {"load": this_process_cpu_s()}
    started = time.monotonic()
    timeout = aiohttp.ClientTimeout(total=15)
    async with aiohttp.ClientSession(timeout=timeout, headers=headers) as client:

        async def post(payload: bytes) -> None:
            started = time.perf_counter()
            async with client.post(url, data=payload) as response:
                await response.read()
            answer_ms.append((time.perf_counter() - started) * 1000)
            statuses.append(response.status)

        tasks = []
        loop = asyncio.get_running_loop()
        for n, payload in enumerate(payloads):
            tasks.append(asyncio.create_task(post(payload)))
            # On schedule from the start: a late wake-up is made up, not added to every gap.
            await asyncio.sleep(max(0.0, started + (n + 1) / rate - loop.time()))
        await asyncio.gather(*tasks)

    conn = await asyncpg.connect(env["POSTGRES_DSN"])
    try:
        deadline = time.monotonic() + 120
        while True:
            rows = await conn.fetch(
                "SELECT EXTRACT(EPOCH FROM inserted_at - received_at) * 1000 AS ms "
                "FROM spakinect_events WHERE entity_id LIKE $1",
                f"gfe_bench_{run}_%",
            )
            if len(rows) >= events or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
    finally:
        await conn.close()
    rows_in_s = time.monotonic() - started
    at_rows = meter.snapshot() | {"load": this_process_cpu_s()}
    cpu = spent(before, at_rows)  # every process until the rows are in
    extra: dict[str, Any] = {}
    if emails:  # --emails: the email stage's work too, per email, until every one is in
        mails_deadline = time.monotonic() + 600
        while count_mails(mail_dir) - mails_before < events:
            if time.monotonic() > mails_deadline:
                break
            await asyncio.sleep(0.5)
        mail_cpu = spent(before, meter.snapshot())
        sent = count_mails(mail_dir) - mails_before
        cpu = {k: v for k, v in cpu.items() if k not in EMAIL_PROCESSES}
        extra["emails_s"] = round(time.monotonic() - started, 1)
        extra["email_cpu_ms_per_email"] = {
            name: round(mail_cpu[name] * 1000 / max(1, sent), 4)
            for name in EMAIL_PROCESSES
            if name in mail_cpu
        }
    mails = count_mails(mail_dir) - mails_before
    latencies = [float(r["ms"]) for r in rows]
    raw = await count_topic(bootstrap, topics.raw(VISIT_COMPLETED)) - raw_before
    clean = await count_topic(bootstrap, topics.clean(VISIT_COMPLETED)) - clean_before
    return {
        "events": events,
        "deliveries": len(deliveries),
        "status_200": statuses.count(200),
        "non_200": len(statuses) - statuses.count(200),
        "answer_ms_p50": round(percentile(answer_ms, 50), 2),
        "answer_ms_p99": round(percentile(answer_ms, 99), 2),
        "rows": len(rows),
        "e2e_ms_p50": round(statistics.median(latencies), 2) if latencies else None,
        "e2e_ms_p99": round(percentile(latencies, 99), 2) if latencies else None,
        "e2e_ms_max": round(max(latencies), 2) if latencies else None,
        "raw_messages": raw,
        "clean_messages": clean,
        "duplicates_dropped_by_dedupe": raw - clean,
        "duplicates_dropped_by_sinks": clean - len(rows),
        "emails": mails,
        "span_s": round(rows_in_s, 1),
        **extra,
        # Per delivery (duplicates included): each one costs the ingress and the dedupe stage.
        **cpu_columns(cpu, len(deliveries), rows_in_s),
    }


JIT_SETTLED_CORES = 0.05
EMAIL_PROCESSES = ("email_worker", "smtp_catcher")  # with --emails: costed per email
# --emails lifts the email pace cap (120/min by default, so a replay cannot flood the
# relay) so that every visit's email is sent and costed. On two cores the email stage
# then competes with the pipeline for CPU: its latency columns are not comparable.
EMAILS_ENV = {"EMAIL_RATE_LIMIT_PER_MIN": "100000"}


def warm_up(env: dict[str, str], args: argparse.Namespace, meter: CpuMeter) -> None:
    """Untimed rounds of ``--warm-up`` visits until the broker's JIT has settled.

    A round is 10 s worth of the rate by default; rounds go on while the broker's
    compiler threads used more than 5 % of a core during the last one (at most 8).
    """
    per_round = args.warm_up if args.warm_up is not None else max(50, int(args.rate * 10))
    kafka = meter.pids.get("kafka")
    for n in range(1, 9):
        if not per_round:
            return
        began, compiled = time.monotonic(), compiler_cpu_s(kafka) if kafka else None
        asyncio.run(drive(env, per_round, args.rate, args.duplicates, meter, args.emails))
        after = compiler_cpu_s(kafka) if kafka else None
        if compiled is None or after is None:
            return
        busy = (after - compiled) / (time.monotonic() - began)
        print(f"warm-up round {n}: {per_round} visits, broker JIT {busy:.2f} cores", flush=True)
        if busy < JIT_SETTLED_CORES:
            return


def run_stack(
    args: argparse.Namespace, tmp: Path, tree: Path = REPO, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Start the stack from ``tree`` under ``tmp``, drive the load, and stop it."""
    extra_env = DEPLOYED_ENV | (EMAILS_ENV if args.emails else {}) | (env or {})
    with running_stack(tmp / "data", extra_env=extra_env, tree=tree) as stack:
        time.sleep(5)  # let the workers join their groups
        meter = CpuMeter(children_by_name(stack.process.pid, STACK_PROCESSES))
        warm_up(stack.env, args, meter)
        return asyncio.run(
            drive(stack.env, args.events, args.rate, args.duplicates, meter, args.emails)
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--rate", type=float, default=50.0, help="deliveries per second")
    parser.add_argument("--duplicates", type=float, default=0.2)
    parser.add_argument(
        "--warm-up", type=int, help="visits per untimed warm-up round (default: 10 s worth)"
    )
    parser.add_argument("--baseline", help="also run the stack as of this git ref")
    parser.add_argument(
        "--emails", action="store_true", help="lift the email pace cap and cost every email"
    )
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for our stack only (with --baseline HEAD: A/B of a setting)",
    )
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "e2e_latency.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spakinect-bench-") as tmp:
        ours_env = dict(item.split("=", 1) for item in args.env)
        result = run_stack(args, Path(tmp) / "ours", env=ours_env)
        if args.baseline:
            tree = checkout(args.baseline, Path(tmp) / "baseline-tree")
            before = run_stack(args, Path(tmp) / "baseline", tree, tree_env(tree))
            result |= {"baseline": args.baseline, "before": before} | versus(result, before)
    result |= machine({"all": "ingress, 3 workers, Kafka, Postgres, SMTP catcher: any core"})
    write_report(result, args.out)


def versus(after: dict[str, Any], before: dict[str, Any]) -> dict[str, Any]:
    """After/before ratios of latency and CPU per delivery."""
    out: dict[str, Any] = {}
    for key in ("e2e_ms_p50", "e2e_ms_p99", "answer_ms_p99"):
        if after.get(key) and before.get(key):
            out[f"ratio_{key}"] = round(after[key] / before[key], 3)
    cpu_after, cpu_before = after["cpu_ms_per_event"], before["cpu_ms_per_event"]
    out["ratio_cpu_ms_per_event"] = ratios = {
        name: round(cpu_after[name] / cpu_before[name], 3)
        for name in cpu_after
        if cpu_before.get(name)
    }
    # The load generator does the same work in both runs: its ratio is the machine's own
    # drift between them (a same-tree A/A here: 0.89x), so each ratio is also given over it.
    if ratios.get("load"):
        out["ratio_cpu_ms_per_event_over_load"] = {
            name: round(ratio / ratios["load"], 3) for name, ratio in ratios.items()
        }
    return out


if __name__ == "__main__":
    main()
