"""Ingress throughput, latency and CPU per request: ours vs a no-op publish vs a bare route.

(a) ``spakinect-pipeline ingress`` publishing with acks=all and the idempotent
producer to a local Kafka broker; (b) ``bench.noop_ingress``, the same app
whose publish returns at once; (c) ``bench.bare_ingress``, a bare FastAPI
route with the visit payload's model and nothing of ours: the framework's
ceiling. All served with the same uvicorn settings and run as deployed
(``LOG_LEVEL=INFO``, JSON logs, metrics on), alternating A B C A B C in one
session, so the ratios a/c and b/c survive a noisy machine. With
``--baseline REF`` (a) and (b) also run from git ``REF``'s tree
(``a_kafka_before``, ``b_noop_before``) in the same rotation: before/after.

- closed loop, maximum throughput: ``wrk`` (req/s, p50, p99);
- fixed offered rate: ``hey -q`` at ``--rate`` req/s (p50, p99);
- CPU per request (core-ms), over 2xx responses only (``non_2xx`` is reported
  beside it): the server's process tree, the Kafka JVM for the variants that
  publish to it, and the load generator (:mod:`bench.cpu`).

The servers are started under ``taskset`` on CPU 0 (all their threads) and the
load generator on CPU 1 (when the machine has two or more); Kafka floats.
``--profile`` adds one py-spy-sampled wrk run per variant after the measured
ones and reports its top frames. ``--sealed`` adds (a) with ``PHI_KAFKA_SEAL=on``
(``a_kafka_sealed``, ratio ``a_sealed_over_a``) to the same rotation: the cost of
sealing patient fields per event. Every request is the same sample visit, so its
patient's data key is minted once and cached: this is the steady state; a new
patient costs one more produce to the key topic, once per ingress process.

    python -m bench.ingress_throughput [--seconds 10] [--rounds 2] [--rate 2000] [--baseline REF]
        [--sealed] [--only-ours] [--sealed-first]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from bench.baseline import CLI_MODULES, DEPLOYED_ENV, checkout, cli_module, tree_env
from bench.cpu import CpuMeter, cpu_columns, spent
from bench.profile import finish, require_py_spy, start_recording
from bench.report import machine, median, write_report
from bench.tools import hey, wrk
from devstack import REPO
from devstack.kafka import KafkaBroker
from devstack.process import ManagedProcess, free_port
from devstack.stack import wait_http
from events.samples import SAMPLES
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.phi.crypto import new_key_entry
from spakinect_pipeline.phi.key_store import ensure_key_topic
from spakinect_pipeline.topic_admin import ensure_topics

SERVER_CPU = 0
LOAD_CPU = 1
BARE = "c_bare"


@dataclass(frozen=True)
class Variant:
    """One server the rotation measures; ``tree`` None is this checkout."""

    name: str
    module: list[str]
    publishes: bool
    tree: Path | None = None
    env: tuple[tuple[str, str], ...] = ()


def sealing_env() -> tuple[tuple[str, str], ...]:
    """``PHI_KAFKA_SEAL=on`` with throwaway keys."""
    return (
        ("PHI_KAFKA_SEAL", "true"),
        ("PHI_KAFKA_MASTER_KEYS", new_key_entry("m1")),
        ("PHI_INDEX_KEY", new_key_entry().split(":", 1)[1]),
    )


def variants(
    baseline_tree: Path | None,
    sealed: bool = False,
    only_ours: bool = False,
    sealed_first: bool = False,
) -> list[Variant]:
    """The rotation: (a), (b), (c), the baseline's (a) and (b), (a) sealed; ``only_ours``
    keeps (a) and its sealed twin (a short before/after of sealing)."""
    chosen = _variants(baseline_tree)
    if sealed:
        cli = cli_module(REPO)
        chosen.append(Variant("a_kafka_sealed", [cli, "ingress"], True, env=sealing_env()))
    if only_ours:
        chosen = [v for v in chosen if v.name in ("a_kafka", "a_kafka_sealed")]
    if sealed_first:  # the rotation's order biases it: run both orders, compare
        chosen.sort(key=lambda v: v.name != "a_kafka_sealed")
    return chosen


def _variants(baseline_tree: Path | None) -> list[Variant]:
    def ours(tree: Path | None, suffix: str) -> list[Variant]:
        cli = cli_module(tree or REPO)
        return [
            Variant(f"a_kafka{suffix}", [cli, "ingress"], publishes=True, tree=tree),
            Variant(f"b_noop{suffix}", ["bench.noop_ingress"], publishes=False, tree=tree),
        ]

    bare = Variant(BARE, ["bench.bare_ingress"], publishes=False)
    if baseline_tree is None:
        return [*ours(None, ""), bare]
    return [*ours(None, ""), bare, *ours(baseline_tree, "_before")]


def pinned(argv: list[str], cpu: int, cores: int) -> tuple[list[str], str]:
    """``argv`` run under ``taskset`` on ``cpu`` (every thread and child it starts, unlike
    an affinity set on the main thread afterwards), and where it runs."""
    if cores < 2 or shutil.which("taskset") is None:
        return argv, "any"
    return ["taskset", "-c", str(cpu), *argv], str(cpu)


def _server(
    variant: Variant, port: int, base: dict[str, str], logs: Path
) -> tuple[ManagedProcess, str]:
    argv = [sys.executable, "-m", *variant.module]
    if variant.module[0] not in CLI_MODULES:
        argv += ["--port", str(port)]
    argv, cpu = pinned(argv, SERVER_CPU, os.cpu_count() or 1)
    env = {**base, "INGRESS_PORT": str(port), **dict(variant.env)}
    if variant.tree is not None:
        env |= tree_env(variant.tree)
    process = ManagedProcess(
        f"ingress-{variant.name}", argv, logs / f"{variant.name}.log", env=env, cwd=variant.tree
    )
    process.start()
    wait_http(process, f"http://127.0.0.1:{port}/readyz")
    return process, f"cpu {cpu}"


def measured(
    load: Callable[[], dict[str, float]], meter: CpuMeter, publishes: bool, seconds: float
) -> dict[str, float]:
    """One load run's figures with its CPU per 2xx response, per participant and in total
    (refusals cost less than an acknowledged event: counting them would flatter)."""
    before = meter.snapshot()
    figures = load()
    cpu = spent(before, meter.snapshot())
    if not publishes:
        cpu.pop("kafka", None)  # idle, not taking part
    cpu["load"] = figures.pop("load_cpu_s")
    columns = cpu_columns(cpu, ok_responses(figures), seconds)
    return (
        figures
        | flat(columns, "cpu_ms_per_req", "cpu_ms_per_event")
        | flat(columns, "cpu_cores", "cpu_cores")
    )


def ok_responses(figures: dict[str, float]) -> int:
    """The 2xx answers of a load run (at least 1, a divisor); ``non_2xx`` stays reported."""
    return max(1, int(figures["requests"] - figures["non_2xx"]))


def flat(columns: dict[str, Any], prefix: str, key: str) -> dict[str, float]:
    return {f"{prefix}.{name}": value for name, value in columns[key].items()}


def _short(name: str) -> str:
    """``a_kafka`` → ``a``, ``b_noop_before`` → ``b_before``, ``a_kafka_sealed`` → ``a_sealed``."""
    suffix = next((s for s in ("_before", "_sealed") if name.endswith(s)), "")
    return name.split("_")[0] + suffix


def ratios(result: dict[str, Any], names: list[str]) -> dict[str, float]:
    """Rate, p99 and server CPU per request of each variant over the bare route's (and a/b)."""
    pairs = [(n, BARE) for n in names if n != BARE]
    pairs += [(a, a.replace("a_kafka", "b_noop")) for a in names if a.startswith("a_kafka")]
    pairs += [("a_kafka_sealed", "a_kafka")] if "a_kafka_sealed" in names else []
    out: dict[str, float] = {}
    for x, y in pairs:
        if f"{y}.max.rps" not in result or f"{x}.max.rps" not in result:
            continue
        label = f"{_short(x)}_over_{_short(y)}"
        for metric in ("rps", "p99_ms", "cpu_ms_per_req.server"):
            out[f"ratio_{label}.max.{metric}"] = round(
                result[f"{x}.max.{metric}"] / result[f"{y}.max.{metric}"], 3
            )
    return out


def run(
    seconds: float,
    rounds: int,
    rate: int,
    connections: int,
    baseline: str | None,
    profile: bool,
    sealed: bool = False,
    only_ours: bool = False,
    sealed_first: bool = False,
) -> dict[str, Any]:
    for tool in ("wrk", "hey"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install wrk hey (see docs/benchmarks.md)")
    body = json.dumps(SAMPLES["visit.completed"]).encode()
    with tempfile.TemporaryDirectory(prefix="spakinect-bench-ingress-") as tmp:
        root = Path(tmp)
        tree = checkout(baseline, root / "baseline") if baseline else None
        chosen = variants(tree, sealed, only_ours, sealed_first)
        broker = KafkaBroker.on_free_ports(root)
        broker.start()
        servers: dict[str, ManagedProcess] = {}
        try:
            kafka = KafkaSettings(bootstrap_servers=[broker.bootstrap_servers])
            asyncio.run(ensure_topics(kafka))
            asyncio.run(ensure_key_topic(kafka))
            base = {
                **os.environ,
                **DEPLOYED_ENV,
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                "INGRESS_ALLOW_UNAUTHENTICATED": "true",
            }
            ports = {v.name: free_port() for v in chosen}
            where: dict[str, str] = {}
            for variant in chosen:
                servers[variant.name], where[variant.name] = _server(
                    variant, ports[variant.name], base, root / "logs"
                )
            load_cpu = LOAD_CPU if (os.cpu_count() or 1) >= 2 else None
            where |= {
                "wrk/hey": f"cpu {load_cpu if load_cpu is not None else 'any'}",
                "kafka": "any",
            }
            kafka_pid = broker.process.pid if broker.process else None
            meters = {
                n: CpuMeter({"server": p.pid, "kafka": kafka_pid}) for n, p in servers.items()
            }
            urls = {n: f"http://127.0.0.1:{p}/webhooks/visit-completed" for n, p in ports.items()}
            for url in urls.values():  # warm up: connections, producer, caches
                wrk(url, body, 2, connections, load_cpu, root)
            closed: dict[str, list[dict[str, float]]] = {n: [] for n in urls}
            fixed: dict[str, list[dict[str, float]]] = {n: [] for n in urls}
            for _ in range(rounds):
                for v in chosen:
                    load = partial(wrk, urls[v.name], body, seconds, connections, load_cpu, root)
                    closed[v.name].append(measured(load, meters[v.name], v.publishes, seconds))
                for v in chosen:
                    load = partial(hey, urls[v.name], body, seconds, rate, load_cpu, root)
                    fixed[v.name].append(measured(load, meters[v.name], v.publishes, seconds))
            profiles: dict[str, dict[str, list[str]]] = {}
            if profile:
                for name, url in urls.items():
                    out = root / "profiles" / f"{name}.txt"
                    recording = start_recording(servers[name].pid or 0, seconds, out)
                    wrk(url, body, seconds, connections, load_cpu, root)
                    profiles[f"profile.{name}"] = finish(recording, out, f"ingress-{name}")
        finally:
            for process in servers.values():
                process.stop(20)
            broker.stop()
    result: dict[str, Any] = {
        "rounds": rounds,
        "seconds_per_run": seconds,
        "connections": connections,
        "offered_rate": rate,
        "baseline": baseline,
        "env": DEPLOYED_ENV,
    }
    for name in urls:
        for kind, runs in (("max", closed[name]), (f"at_{rate}", fixed[name])):
            for metric in runs[0]:
                result[f"{name}.{kind}.{metric}"] = round(median([r[metric] for r in runs]), 4)
    result |= ratios(result, list(urls))
    return result | profiles | machine(where)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=int, default=2000, help="offered req/s for hey")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--baseline", help="also run (a) and (b) as of this git ref")
    parser.add_argument("--profile", action="store_true", help="py-spy top frames per variant")
    parser.add_argument("--sealed", action="store_true", help="also (a) with PHI_KAFKA_SEAL=on")
    parser.add_argument("--only-ours", action="store_true", help="only (a), and (a) sealed")
    parser.add_argument("--sealed-first", action="store_true", help="(a) sealed first in a round")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ingress.json")
    args = parser.parse_args()
    if args.profile:
        require_py_spy()
    result = run(
        args.seconds,
        args.rounds,
        args.rate,
        args.connections,
        args.baseline,
        args.profile,
        args.sealed,
        args.only_ours,
        args.sealed_first,
    )
    write_report(result, args.out)


if __name__ == "__main__":
    main()
