"""Ingress throughput and latency: the real ingress vs the same app with a no-op publish.

(a) ``spakinect-pipeline ingress`` publishing with acks=all and the idempotent
producer to a local Kafka broker; (b) ``bench.noop_ingress``, the same app
whose publish returns at once: the HTTP stack's ceiling. Both run side by
side in one session, alternating, so the ratio a/b survives a noisy machine.

- closed loop, maximum throughput: ``wrk`` (req/s, p50, p99);
- fixed offered rate: ``hey -q`` at ``--rate`` req/s (p50, p99).

The servers are pinned to CPU 0 and the load generator to CPU 1 (when the
machine has two or more); Kafka floats.

    python -m bench.ingress_throughput [--seconds 10] [--rounds 2] [--rate 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.report import machine, median, write_report
from bench.tools import hey, wrk
from devstack import REPO
from devstack.kafka import KafkaBroker
from devstack.process import ManagedProcess, free_port
from devstack.stack import wait_http
from events.samples import SAMPLES
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.topic_admin import ensure_topics

SERVER_CPU = 0
LOAD_CPU = 1


def _pin(pid: int | None, cpu: int) -> str:
    cores = os.cpu_count() or 1
    if pid is None or cores < 2:
        return "any"
    os.sched_setaffinity(pid, {cpu})
    return str(cpu)


def _server(name: str, argv: list[str], env: dict[str, str], logs: Path) -> ManagedProcess:
    process = ManagedProcess(name, [sys.executable, *argv], logs / f"{name}.log", env=env)
    process.start()
    wait_http(process, f"http://127.0.0.1:{env['INGRESS_PORT']}/readyz")
    return process


def run(seconds: float, rounds: int, rate: int, connections: int) -> dict[str, Any]:
    for tool in ("wrk", "hey"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install wrk hey (see README, Benchmarks)")
    body = json.dumps(SAMPLES["visit.completed"]).encode()
    with tempfile.TemporaryDirectory(prefix="spakinect-bench-ingress-") as tmp:
        root = Path(tmp)
        broker = KafkaBroker.on_free_ports(root)
        broker.start()
        servers: dict[str, ManagedProcess] = {}
        try:
            asyncio.run(ensure_topics(KafkaSettings(bootstrap_servers=[broker.bootstrap_servers])))
            base = {
                **os.environ,
                "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
                "INGRESS_ALLOW_UNAUTHENTICATED": "true",
                "LOG_LEVEL": "WARNING",
            }
            ports = {"a_kafka": free_port(), "b_noop": free_port()}
            servers["a_kafka"] = _server(
                "ingress-kafka",
                ["-m", "cli.main", "ingress"],
                {**base, "INGRESS_PORT": str(ports["a_kafka"])},
                root / "logs",
            )
            servers["b_noop"] = _server(
                "ingress-noop",
                ["-m", "bench.noop_ingress", "--port", str(ports["b_noop"])],
                {**base, "INGRESS_PORT": str(ports["b_noop"])},
                root / "logs",
            )
            where = {name: f"cpu {_pin(p.pid, SERVER_CPU)}" for name, p in servers.items()}
            load_cpu = LOAD_CPU if (os.cpu_count() or 1) >= 2 else None
            where |= {
                "wrk/hey": f"cpu {load_cpu if load_cpu is not None else 'any'}",
                "kafka": "any",
            }
            urls = {n: f"http://127.0.0.1:{p}/webhooks/visit-completed" for n, p in ports.items()}
            for url in urls.values():  # warm up: connections, producer, JIT-free but caches
                wrk(url, body, 2, connections, load_cpu, root)
            closed: dict[str, list[dict[str, float]]] = {n: [] for n in urls}
            fixed: dict[str, list[dict[str, float]]] = {n: [] for n in urls}
            for _ in range(rounds):
                for name, url in urls.items():
                    closed[name].append(wrk(url, body, seconds, connections, load_cpu, root))
                for name, url in urls.items():
                    fixed[name].append(hey(url, body, seconds, rate, load_cpu, root))
        finally:
            for process in servers.values():
                process.stop(20)
            broker.stop()
    result: dict[str, Any] = {
        "rounds": rounds,
        "seconds_per_run": seconds,
        "connections": connections,
        "offered_rate": rate,
    }
    for name in urls:
        for kind, runs in (("max", closed[name]), (f"at_{rate}", fixed[name])):
            for metric in runs[0]:
                result[f"{name}.{kind}.{metric}"] = round(median([r[metric] for r in runs]), 2)
    result["ratio_a_over_b.max_rps"] = round(
        result["a_kafka.max.rps"] / result["b_noop.max.rps"], 3
    )
    result["ratio_a_over_b.max_p99"] = round(
        result["a_kafka.max.p99_ms"] / result["b_noop.max.p99_ms"], 3
    )
    result |= machine(where)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rate", type=int, default=2000, help="offered req/s for hey")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "ingress.json")
    args = parser.parse_args()
    result = run(args.seconds, args.rounds, args.rate, args.connections)
    write_report(result, args.out)


if __name__ == "__main__":
    main()
