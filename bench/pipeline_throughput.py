"""Pipeline throughput: a preloaded raw topic drained into Postgres, ours vs the limit vs a peer.

``--events`` raw visit events (``--duplicates`` of them vendor retries) are
preloaded into the raw topic of a local broker. Then, one after the other on
the same broker and Postgres, each variant drains the topic into its own
database and the time until every distinct event's row is there is taken.
Each variant has topics of its own (``KAFKA_TOPIC_PREFIX``), preloaded just
before it starts: shared clean topics would hand a later run of ours the
earlier run's deduped events.

- (a) ours: the dedupe worker and the Postgres worker (two processes);
- (b) the raw limit (:mod:`bench.raw_limit`): aiokafka + COPY, no Faust;
- (c) the peer (:mod:`bench.quix_peer`): the same job in Quix Streams, its
  state for dedupe, in its own venv (``.venv-quix``, made on first use);
- with ``--baseline REF``, also ours as of git ``REF`` (``ours_baseline``),
  for before/after figures measured side by side.

Reported per variant: wall time from process start, events/s over it, and
rows/s between the first and the last row (start-up excluded); ratios a/b
and a/c; and whether the three databases hold the same rows.

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

from bench.raw_events import preload, with_duplicates
from bench.report import machine, write_report
from devstack import REPO
from devstack.postgres import create_database
from devstack.process import ManagedProcess, free_port
from devstack.stack import LocalServices, Ports, pipeline_process, stage_argv
from events.topics import Topics
from sinks.postgres.migrate import migrate
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.topic_admin import ensure_topics

QUIX_VENV = REPO / ".venv-quix"
QUIX_REQUIREMENTS = REPO / "bench" / "quix-requirements.txt"
VARIANTS = ("ours", "raw_limit", "quix")
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


def checkout(ref: str, into: Path) -> Path:
    """The tree of git ``ref`` (no history) in ``into``: the baseline's code."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


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
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(tree),
        }
        processes = [
            pipeline_process(
                f"{group}-{stage}",
                stage_argv(stage),
                stage_env | {"STREAMS_WEB_PORT": str(free_port())},
                logs,
            )
            for stage in ("dedupe", "postgres")
        ]
        for process in processes:
            process.cwd = tree
        return processes
    topic = Topics(prefix_of(variant)).visit_completed
    args = ["--bootstrap", bootstrap, "--dsn", dsn, "--group", group, "--topic", topic]
    if variant == "raw_limit":
        return [
            ManagedProcess(
                group, [sys.executable, "-m", "bench.raw_limit", *args], logs / f"{group}.log"
            )
        ]
    python = quix_python()
    state = ["--state-dir", str(root / "state" / group)]
    return [
        ManagedProcess(
            group,
            [str(python), "-m", "bench.quix_peer", *args, *state],
            logs / f"{group}.log",
            env={**os.environ, "PYTHONPATH": str(REPO)},
            cwd=REPO,
        )
    ]


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
    variant: str, env: dict[str, str], dsn: str, root: Path, distinct: int, total: int
) -> dict[str, Any]:
    processes = processes_for(variant, env, dsn, root)
    started = time.monotonic()
    for process in processes:
        process.start()
    try:
        result = asyncio.run(wait_rows(dsn, distinct, timeout=1800))
    finally:
        for process in processes:
            process.stop(grace=20)
    wall = time.monotonic() - started
    return {
        "wall_s": round(wall, 1),
        "events_per_s": round(total / wall, 1),
        "first_to_last_row_s": round(result["first_to_last_row_s"], 1),
        "rows_per_s_steady": round(distinct / max(0.001, result["first_to_last_row_s"]), 1),
        "rows": asyncio.run(row_counts(dsn)),
    }


def run(
    root: Path, events: int, duplicates: float, variants: list[str], baseline: str | None
) -> dict[str, Any]:
    if baseline:
        checkout(baseline, root / "baseline")
        variants = [*variants, BASELINE]
    services = LocalServices(root, REPO / ".cache", Ports.free())
    services.start()
    try:
        env = services.env()
        kafka = KafkaSettings(bootstrap_servers=[env["KAFKA_BOOTSTRAP_SERVERS"]])
        messages = with_duplicates(Topics(), uuid.uuid4().hex[:6], events, duplicates)
        distinct = len({m.key for m in messages})
        asyncio.run(open_group_coordinator(kafka))
        results: dict[str, Any] = {}
        for variant in variants:
            topics = Topics(prefix_of(variant))
            asyncio.run(ensure_topics(kafka, topics.all()))
            began = time.monotonic()
            mine = [replace(m, topic=topics.visit_completed) for m in messages]
            asyncio.run(preload(kafka, mine))
            took = time.monotonic() - began
            print(
                f"{variant}: preloaded {len(mine):,} events ({distinct:,} distinct) in {took:.0f}s"
            )
            dsn = asyncio.run(create_database(services.postgres.dsn, f"bench_{variant}"))
            asyncio.run(migrate(dsn))
            results[variant] = run_variant(variant, env, dsn, root, distinct, len(messages))
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
        (BASELINE, "after_over_before"),
    ):
        if ours and other in results:
            out[name] = round(ours["events_per_s"] / results[other]["events_per_s"], 3)
            out[f"{name}_steady"] = round(
                ours["rows_per_s_steady"] / results[other]["rows_per_s_steady"], 3
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
        "--out", type=Path, default=REPO / "bench" / "results" / "pipeline_throughput.json"
    )
    args = parser.parse_args()
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        parser.error(f"unknown variant(s) {sorted(unknown)}; known: {', '.join(VARIANTS)}")
    with tempfile.TemporaryDirectory(prefix="spakinect-bench-pipeline-") as tmp:
        result = run(Path(tmp), args.events, args.duplicates, variants, args.baseline)
    result |= machine({"all": "Kafka, Postgres, then each variant's processes in turn: any core"})
    write_report(result, args.out)


if __name__ == "__main__":
    main()
