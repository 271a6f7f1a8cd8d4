"""Pipeline throughput: a preloaded raw topic drained into Postgres, ours vs the limit vs a peer.

``--events`` raw visit events (``--duplicates`` of them vendor retries) are
preloaded into the raw topic of a local broker. Then, one after the other on
the same broker and Postgres, each variant drains the topic into its own
database and the time until every distinct event's row is there is taken.
Each variant has topics of its own (``KAFKA_TOPIC_PREFIX``), preloaded just
before it starts: shared clean topics would hand a later run of ours the
earlier run's deduped events.

- (a) ours: the dedupe worker and the Postgres worker (two processes, run
  as deployed: ``LOG_LEVEL=INFO``, JSON logs, metrics on);
- (b) the raw limit (:mod:`bench.raw_limit`): aiokafka + COPY, no Faust;
- (c) the peer (:mod:`bench.quix_peer`) doing the same job as ours in Quix
  Streams, in two processes: one decides (its state for dedupe) and
  publishes the clean topic, a second consumer writes Postgres from it; in
  its own venv (``.venv-quix``, made on first use);
- (d) ``quix_one_process``: Quix deciding and writing in one process, no
  clean topic (less work than ours: a lower bound for the peer);
- with ``--baseline REF``, also ours as of git ``REF`` (``ours_baseline``),
  for before/after figures measured side by side.

The broker is warmed up first (:mod:`bench.warm_up`), so no variant pays
for its JIT. Reported per variant: wall time from process start until every row is in,
events/s over it, rows/s between the first and the last row (start-up
excluded), and CPU per event (:mod:`bench.cpu`: core-ms per raw event of
each of the variant's processes, the Kafka JVM and the Postgres server with
all its backends, over the same span, and in total, also per distinct
event); ratios a/b and a/c (rate and CPU per event); and whether the
databases hold the same rows. ``--profile`` samples each of the variant's
Python processes with py-spy and reports its top frames (slows them: not
for figures).

    python -m bench.pipeline_throughput [--events 200000] [--duplicates 0.2] [--baseline REF]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg

from bench.baseline import DEPLOYED_ENV, checkout, cli_module
from bench.cpu import TOTAL, CpuMeter, cpu_columns, spent
from bench.profile import finish, require_py_spy, start_recording
from bench.raw_events import preload, with_duplicates
from bench.report import machine, write_report
from bench.warm_up import warm_up_broker
from devstack import REPO
from devstack.postgres import create_database
from devstack.process import ManagedProcess, free_port
from devstack.stack import LocalServices, Ports, pipeline_process, stage_argv
from events.registry import VISIT_COMPLETED
from events.topics import Topics
from sinks.postgres.migrate import migrate
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.topic_admin import ensure_topics

QUIX_VENV = REPO / ".venv-quix"
QUIX_REQUIREMENTS = REPO / "bench" / "quix-requirements.txt"
VARIANTS = ("ours", "raw_limit", "quix", "quix_one_process")
BASELINE = "ours_baseline"


def quix_python() -> Path:
    """The peer's interpreter, its venv made from ``bench/quix-requirements.txt`` if missing."""
    python = QUIX_VENV / "bin" / "python"
    stamp = QUIX_VENV / ".installed"
    if not stamp.exists() or stamp.stat().st_mtime < QUIX_REQUIREMENTS.stat().st_mtime:
        print("creating .venv-quix for the Quix Streams peer…", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(QUIX_VENV)], check=True)
        pip = [str(python), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, "-r", str(QUIX_REQUIREMENTS)], check=True)
        stamp.touch()
    return python


async def row_counts(dsn: str) -> dict[str, int]:
    conn = await asyncpg.connect(dsn)
    try:
        return {
            table: int(await conn.fetchval(f"SELECT count(*) FROM {table}"))  # noqa: S608
            for table in ("spakinect_events", "gfe_visits", "gfe_visit_treatments")
        }
    finally:
        await conn.close()


async def wait_rows(dsn: str, expected: int, timeout: float) -> dict[str, Any]:
    """Poll until ``expected`` event rows are in; return the first-to-last row span."""
    conn = await asyncpg.connect(dsn)
    try:
        deadline = time.monotonic() + timeout
        while (count := await conn.fetchval("SELECT count(*) FROM spakinect_events")) < expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{count} of {expected} rows after {timeout:.0f}s")
            await asyncio.sleep(0.2)
        span = await conn.fetchval(
            "SELECT EXTRACT(EPOCH FROM max(inserted_at) - min(inserted_at)) FROM spakinect_events"
        )
        return {"rows": count, "first_to_last_row_s": float(span)}
    finally:
        await conn.close()


def prefix_of(variant: str) -> str:
    return f"bench-{variant.replace('_', '-')}."


def processes_for(variant: str, env: dict[str, str], dsn: str, root: Path) -> list[ManagedProcess]:
    logs = root / "logs"
    group = f"bench-{variant}-{uuid.uuid4().hex[:6]}"
    bootstrap = env["KAFKA_BOOTSTRAP_SERVERS"]
    if variant in ("ours", BASELINE):
        # The baseline runs from its own tree: first on sys.path, before this checkout.
        tree = root / "baseline" if variant == BASELINE else REPO
        stage_env = {
            **env,
            "POSTGRES_DSN": dsn,
            "STREAMS_APP_ID": group,
            "KAFKA_TOPIC_PREFIX": prefix_of(variant),
            "STREAMS_STATE_DIR": str(root / "state" / group),
            **DEPLOYED_ENV,
            "PYTHONPATH": str(tree),
        }
        processes = [
            pipeline_process(
                f"{stage}_worker",
                stage_argv(stage),
                stage_env | {"STREAMS_WEB_PORT": str(free_port())},
                logs / variant,
            )
            for stage in ("dedupe", "postgres")
        ]
        for process in processes:
            process.cwd = tree
            process.argv[2] = cli_module(tree)  # [python, "-m", module, ...]
        return processes
    topics = Topics(prefix_of(variant))
    args = ["--bootstrap", bootstrap, "--dsn", dsn, "--topic", topics.raw(VISIT_COMPLETED)]
    if variant == "raw_limit":
        argv = [sys.executable, "-m", "bench.raw_limit", *args, "--group", group]
        return [ManagedProcess("raw_limit", argv, logs / f"{group}.log")]
    python = quix_python()
    state = [
        "--state-dir",
        str(root / "state" / group),
        "--clean-topic",
        topics.clean(VISIT_COMPLETED),
    ]
    modes = ["single"] if variant == "quix_one_process" else ["dedupe", "sink"]
    return [
        ManagedProcess(
            f"quix_{mode}",
            [str(python), "-m", "bench.quix_peer", *args, *state, *mode_args(mode, group)],
            logs / variant / f"quix_{mode}.log",
            env={**os.environ, "PYTHONPATH": str(REPO)},
            cwd=REPO,
        )
        for mode in modes
    ]


def mode_args(mode: str, group: str) -> list[str]:
    """A Quix peer process's mode and its own consumer group."""
    return ["--mode", mode, "--group", f"{group}-{mode}"]


async def open_group_coordinator(kafka: KafkaSettings, timeout: float = 60) -> None:
    """Have Kafka create ``__consumer_offsets`` now, not in the first variant's time."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.errors import KafkaError

    admin = AIOKafkaAdminClient(**kafka.client_options())
    await admin.start()
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                await admin.find_coordinator("bench-warm-up")
                return
            except KafkaError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.5)
    finally:
        await admin.close()


def run_variant(
    variant: str,
    services: dict[str, int | None],
    run: tuple[dict[str, str], str, Path],
    distinct: int,
    total: int,
    profile: bool = False,
) -> dict[str, Any]:
    """Start the variant's processes, wait for every row, and take its figures.

    ``services`` are the shared servers' pids (Kafka, Postgres) whose CPU the
    variant's span also costs; ``run`` is the env, database DSN and work folder.
    """
    env, dsn, root = run
    processes = processes_for(variant, env, dsn, root)
    services_meter = CpuMeter(services)
    before = services_meter.snapshot()  # the variant's own processes start from zero
    started = time.monotonic()
    for process in processes:
        process.start()
    meter = CpuMeter({p.name: p.pid for p in processes} | services)
    recordings = {
        p.name: start_recording(p.pid or 0, None, root / "profiles" / f"{variant}-{p.name}.txt")
        for p in processes
        if profile
    }
    try:
        result = asyncio.run(wait_rows(dsn, distinct, timeout=1800))
        wall = time.monotonic() - started
        cpu = spent(before, meter.snapshot())
        profiles = {
            f"profile.{name}": finish(rec, root / "profiles" / f"{variant}-{name}.txt", kept)
            for name, rec in recordings.items()
            for kept in [f"{variant}-{name}"]
        }
    finally:
        for process in processes:
            process.stop(grace=20)
    columns = cpu_columns(cpu, total, wall)
    return {
        "wall_s": round(wall, 1),
        "events_per_s": round(total / wall, 1),
        "first_to_last_row_s": round(result["first_to_last_row_s"], 1),
        "rows_per_s_steady": round(distinct / max(0.001, result["first_to_last_row_s"]), 1),
        **columns,
        "cpu_ms_per_distinct_event": round(sum(cpu.values()) * 1000 / distinct, 4),
        "rows": asyncio.run(row_counts(dsn)),
        **profiles,
    }


def run(
    root: Path,
    events: int,
    duplicates: float,
    variants: list[str],
    baseline: str | None,
    profile: bool = False,
    baseline_first: bool = False,
) -> dict[str, Any]:
    if baseline:
        checkout(baseline, root / "baseline")
        variants = [BASELINE, *variants] if baseline_first else [*variants, BASELINE]
    services = LocalServices(root, REPO / ".cache", Ports.free())
    services.start()
    try:
        env = services.env()
        kafka = KafkaSettings(bootstrap_servers=[env["KAFKA_BOOTSTRAP_SERVERS"]])
        messages = with_duplicates(Topics(), uuid.uuid4().hex[:6], events, duplicates)
        distinct = len({m.key for m in messages})
        asyncio.run(open_group_coordinator(kafka))
        warm = asyncio.run(warm_up_broker(kafka, messages))
        print(f"broker warmed up with {len(messages):,} messages in {warm:.0f}s (untimed)")
        results: dict[str, Any] = {}
        for variant in variants:
            topics = Topics(prefix_of(variant))
            asyncio.run(ensure_topics(kafka, topics.all()))
            began = time.monotonic()
            mine = [replace(m, topic=topics.raw(VISIT_COMPLETED)) for m in messages]
            asyncio.run(preload(kafka, mine))
            took = time.monotonic() - began
            print(
                f"{variant}: preloaded {len(mine):,} events ({distinct:,} distinct) in {took:.0f}s"
            )
            dsn = asyncio.run(create_database(services.postgres.dsn, f"bench_{variant}"))
            asyncio.run(migrate(dsn))
            pids = {
                "kafka": services.kafka.process.pid if services.kafka.process else None,
                "postgres_server": (
                    services.postgres.process.pid if services.postgres.process else None
                ),
            }
            results[variant] = run_variant(
                variant, pids, (env, dsn, root), distinct, len(messages), profile
            )
            print(variant, results[variant], flush=True)
    finally:
        services.stop()
    figures = {"events": len(messages), "distinct": distinct, "baseline": baseline}
    return figures | results | ratios(results)


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ours = results.get("ours")
    for other, name in (
        ("raw_limit", "a_over_b"),
        ("quix", "a_over_c"),
        ("quix_one_process", "a_over_d"),
        (BASELINE, "after_over_before"),
    ):
        if ours and other in results:
            out[name] = round(ours["events_per_s"] / results[other]["events_per_s"], 3)
            out[f"{name}_steady"] = round(
                ours["rows_per_s_steady"] / results[other]["rows_per_s_steady"], 3
            )
            out[f"{name}_cpu_per_event"] = round(
                ours["cpu_ms_per_event"][TOTAL] / results[other]["cpu_ms_per_event"][TOTAL], 3
            )
    if len(results) > 1:
        out["same_rows"] = len({str(r["rows"]) for r in results.values()}) == 1
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--duplicates", type=float, default=0.2)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--baseline", help="also run ours as of this git ref (before/after)")
    parser.add_argument(
        "--baseline-first",
        action="store_true",
        help="run the baseline before the others (the first variant pays more broker CPU)",
    )
    parser.add_argument("--profile", action="store_true", help="py-spy top frames per process")
    parser.add_argument(
        "--out", type=Path, default=REPO / "bench" / "results" / "pipeline_throughput.json"
    )
    args = parser.parse_args()
    if args.profile:
        require_py_spy()
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s) {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    with tempfile.TemporaryDirectory(prefix="spakinect-bench-pipeline-") as tmp:
        result = run(
            Path(tmp),
            args.events,
            args.duplicates,
            variants,
            args.baseline,
            args.profile,
            args.baseline_first,
        )
    result |= machine({"all": "Kafka, Postgres, then each variant's processes in turn: any core"})
    write_report(result, args.out)


if __name__ == "__main__":
    main()
