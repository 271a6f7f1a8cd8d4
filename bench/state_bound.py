"""Bounded dedupe state: a million distinct events through one dedupe worker.

With ``DEDUPE_WINDOW`` (60 s here) the stage must hold only the last window's
entries, in memory, in RocksDB and in the changelog topics. This preloads the
raw topic with ``--events`` distinct visits, starts one dedupe worker process
on a local broker and samples, every ``--every`` seconds: the worker's RSS,
the entries it holds (its ``expiry_index_entries`` gauge), the bytes of its
changelog segments on the broker's disk and the events it has handled. It
reports these when the window first fills (one window after the first event)
and at the end (every event handled), with the ratio end/first, and CPU per
event handled (:mod:`bench.cpu`: the worker and the Kafka JVM, over the
worker's run). The worker runs as deployed (``LOG_LEVEL=INFO``, JSON logs,
metrics on).

    python -m bench.state_bound [--events 1000000] [--window 60]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from bench.baseline import DEPLOYED_ENV
from bench.cpu import CpuMeter, cpu_columns, spent
from bench.raw_events import distinct_visits, preload
from bench.report import machine, write_report
from devstack import REPO
from devstack.kafka import KafkaBroker
from devstack.process import free_port
from devstack.stack import pipeline_process, stage_argv
from events.topics import Topics
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.topic_admin import ensure_topics

APP_ID = "bench-state"


def scrape(port: int) -> dict[str, float]:
    """The dedupe worker's counters and gauges we track, by name."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            label = sample.labels.get("outcome") or sample.labels.get("name")
            if label:
                out[label] = sample.value
    return out


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def changelog_bytes(log_dir: Path, prefix: str) -> tuple[int, int]:
    """Bytes and count of the segment files (``*.log``) of the topics starting with ``prefix``."""
    segments = [f for d in log_dir.glob(f"{prefix}*-changelog-*") for f in d.glob("*.log")]
    return sum(f.stat().st_size for f in segments if f.exists()), len(segments)


def dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def sample(port: int, pid: int, log_dir: Path, state_dir: Path, started: float) -> dict[str, Any]:
    metrics = scrape(port)
    size, segments = changelog_bytes(log_dir, f"{APP_ID}-dedupe")
    return {
        "t_s": round(time.monotonic() - started, 1),
        "handled": int(metrics.get("published_apply", 0) + metrics.get("duplicates", 0)),
        "entries": int(metrics.get("expiry_index_entries", 0)),
        "expired": int(metrics.get("expired", 0)),
        "rss_mib": round(rss_mib(pid), 1),
        "changelog_mib": round(size / 2**20, 1),
        "changelog_segments": segments,
        "rocksdb_mib": round(dir_bytes(state_dir) / 2**20, 1),
    }


def run(root: Path, events: int, window: float, every: float) -> dict[str, Any]:
    broker = KafkaBroker.on_free_ports(root, heap="1g")
    broker.start()
    try:
        kafka = KafkaSettings(bootstrap_servers=[broker.bootstrap_servers])
        topics = Topics()
        asyncio.run(ensure_topics(kafka))
        began = time.monotonic()
        run_id = uuid.uuid4().hex[:6]
        asyncio.run(preload(kafka, distinct_visits(topics, run_id, events)))
        preload_s = time.monotonic() - began
        print(f"preloaded {events:,} events in {preload_s:.0f}s", flush=True)
        port = free_port()
        state_dir = root / "state"
        env = {
            "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
            "DEDUPE_WINDOW": f"{window:g}s",
            "STREAMS_APP_ID": APP_ID,
            "STREAMS_STATE_DIR": str(state_dir),
            "STREAMS_WEB_PORT": str(port),
            **DEPLOYED_ENV,
        }
        worker = pipeline_process("dedupe", stage_argv("dedupe"), env, root / "logs")
        kafka_pid = broker.process.pid if broker.process else None
        before = CpuMeter({"kafka": kafka_pid}).snapshot()
        started = time.monotonic()
        worker.start()
        try:
            series = watch(worker.pid or 0, port, broker.data_dir / "log", state_dir, events, every)
            cpu = spent(
                before, CpuMeter({"kafka": kafka_pid, "dedupe_worker": worker.pid}).snapshot()
            )
            span_s = time.monotonic() - started
        finally:
            worker.stop(grace=30)
    finally:
        broker.stop()
    summary = summarise(series, events, window)
    cost = cpu_columns(cpu, max(1, summary["handled"]), span_s)
    return summary | cost | {"preload_s": round(preload_s, 1)}


def watch(
    pid: int, port: int, log_dir: Path, state_dir: Path, events: int, every: float
) -> list[dict[str, Any]]:
    """Sample until every event is handled (or nothing moved for two minutes)."""
    started = time.monotonic()
    series: list[dict[str, Any]] = []
    last_progress = started
    while True:
        time.sleep(every)
        try:
            point = sample(port, pid, log_dir, state_dir, started)
        except OSError:
            continue  # the worker's web server is not up yet
        if not series or point["handled"] > series[-1]["handled"]:
            last_progress = time.monotonic()
        series.append(point)
        if len(series) % max(1, round(30 / every)) == 0:
            print(point, flush=True)
        if point["handled"] >= events or time.monotonic() - last_progress > 120:
            return series


def summarise(series: list[dict[str, Any]], events: int, window: float) -> dict[str, Any]:
    """Figures when the window first fills and at the end, and end/first ratios."""
    handling = [p for p in series if p["handled"] > 0]
    if not handling:
        raise SystemExit("the dedupe worker handled no event; see its log")
    first_t = handling[0]["t_s"]
    filled = next((p for p in handling if p["t_s"] >= first_t + window), handling[-1])
    end = series[-1]
    keys = ("rss_mib", "entries", "changelog_mib", "rocksdb_mib")
    after_fill = [p for p in handling if p["t_s"] >= filled["t_s"]]
    return {
        "events": events,
        "handled": end["handled"],
        # Entries scale with the rate; per event handled in the last window they should not.
        "entries_per_window_event": {
            "at_window_fill": per_window_event(handling, filled, window),
            "at_end": per_window_event(handling, end, window),
        },
        "window_s": window,
        "events_per_s": round(end["handled"] / max(0.1, end["t_s"] - first_t), 1),
        "events_per_s_after_fill": round(
            (end["handled"] - filled["handled"]) / max(0.1, end["t_s"] - filled["t_s"]), 1
        ),
        "at_window_fill": filled,
        "at_end": end,
        "end_over_fill": {k: round(end[k] / filled[k], 3) if filled[k] else None for k in keys},
        "max_after_fill": {k: max(p[k] for p in after_fill) for k in keys},
        "series": series,
    }


def per_window_event(series: list[dict[str, Any]], at: dict[str, Any], window: float) -> float:
    """Entries held at ``at`` per event handled in the window before it (2 per distinct visit)."""
    before = [p for p in series if p["t_s"] <= at["t_s"] - window]
    handled = at["handled"] - (before[-1]["handled"] if before else 0)
    return round(at["entries"] / handled, 3) if handled else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--window", type=float, default=60.0, help="DEDUPE_WINDOW in seconds")
    parser.add_argument("--every", type=float, default=2.0, help="sampling interval, seconds")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "state_bound.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="spakinect-bench-state-") as tmp:
        result = run(Path(tmp), args.events, args.window, args.every)
    result |= machine({"all": "Kafka, preloader then one dedupe worker: any core"})
    write_report(result, args.out, unprinted=("series",))


if __name__ == "__main__":
    main()
