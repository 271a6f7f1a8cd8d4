"""CPU per event: the accounting arithmetic, process-tree sampling, report rows and profiles."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.baseline import cli_module
from bench.cpu import CpuMeter, children_by_name, cost_per_event, cpu_columns, spent, tree_cpu_s
from bench.ingress_throughput import measured, ok_responses, pinned, ratios
from bench.profile import top_inclusive, top_own


def test_cost_is_cpu_seconds_spent_in_the_span_per_event_in_core_ms() -> None:
    before = {"ingress": 10.0, "kafka": 100.0}
    after = {"ingress": 12.0, "kafka": 100.5, "wrk": 0.25}  # wrk appeared during the span
    cpu = spent(before, after)
    assert cpu == {"ingress": 2.0, "kafka": 0.5, "wrk": 0.25}
    assert cost_per_event(cpu, 1000) == {"ingress": 2.0, "kafka": 0.5, "wrk": 0.25, "total": 2.75}
    columns = cpu_columns(cpu, 1000, wall_s=5.0)
    assert columns["cpu_cores"] == {"ingress": 0.4, "kafka": 0.1, "wrk": 0.05, "total": 0.55}


def test_a_counter_that_went_backwards_costs_nothing_and_zero_events_is_an_error() -> None:
    # A participant restarted between the snapshots: its fresh counter is below the old one.
    assert spent({"worker": 5.0}, {"worker": 1.0}) == {"worker": 0.0}
    with pytest.raises(ValueError, match="at least one event"):
        cost_per_event({"worker": 1.0}, 0)


BURN = "import time\nend = time.process_time() + {s}\nwhile time.process_time() < end: pass\n"


def test_a_tree_counts_its_descendants_also_those_that_exited_inside_the_span() -> None:
    # The parent starts a child that burns 0.3 s of CPU and is reaped, then waits: as a
    # postmaster's backends come and go, the child's time must still be counted.
    script = (
        "import subprocess, sys, time\n"
        "time.sleep(0.5)\n"
        f"subprocess.run([sys.executable, '-c', {BURN.format(s=0.3)!r}])\n"
        "time.sleep(30)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        meter = CpuMeter({"tree": parent.pid, "never": None})
        before = meter.snapshot()
        assert set(before) == {"tree"}
        time.sleep(2.5)
        cpu = spent(before, meter.snapshot())
        assert 0.3 <= cpu["tree"] < 1.5
    finally:
        parent.kill()
        parent.wait()
    assert tree_cpu_s(parent.pid) == 0.0  # gone: nothing, not an error


def test_children_are_named_by_rule_and_numbered_when_repeated() -> None:
    sleeper = [sys.executable, "-c", "import time; time.sleep(30)"]
    script = (
        "import subprocess, sys, time\n"
        f"ps = [subprocess.Popen({sleeper!r}) for _ in range(2)]\n"
        "time.sleep(30)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script])
    try:
        deadline = time.monotonic() + 10
        while len(named := children_by_name(parent.pid, lambda _pid: "sleeper")) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert set(named) == {"sleeper", "sleeper-2"}
    finally:
        parent.kill()
        parent.wait()


def test_ingress_ratios_are_over_the_bare_route_and_a_over_b() -> None:
    def figures(name: str, rps: float, p99: float, cpu: float) -> dict[str, float]:
        return {
            f"{name}.max.rps": rps,
            f"{name}.max.p99_ms": p99,
            f"{name}.max.cpu_ms_per_req.server": cpu,
        }

    result = (
        figures("a_kafka", 1000, 40, 1.0)
        | figures("b_noop", 2000, 20, 0.5)
        | figures("c_bare", 4000, 10, 0.25)
        | figures("a_kafka_before", 500, 80, 2.0)
    )
    out = ratios(result, ["a_kafka", "b_noop", "c_bare", "a_kafka_before"])
    assert out["ratio_a_over_c.max.rps"] == 0.25
    assert out["ratio_b_over_c.max.rps"] == 0.5
    assert out["ratio_a_over_c.max.cpu_ms_per_req.server"] == 4.0
    assert out["ratio_a_before_over_c.max.rps"] == 0.125
    assert out["ratio_a_over_b.max.p99_ms"] == 2.0
    # No b_noop_before ran: no a_before/b_before ratio rather than a made-up one.
    assert not any(key.startswith("ratio_a_before_over_b") for key in out)


def test_profile_summary_ranks_leaf_frames_by_own_samples_across_lines() -> None:
    collapsed = "\n".join(
        [
            "run (asyncio/runners.py:118);handle (app.py:10);too_deep (intake.py:50) 30",
            "run (asyncio/runners.py:118);handle (app.py:10);too_deep (intake.py:52) 10",
            "run (asyncio/runners.py:118);handle (app.py:12) 50",
            "run (asyncio/runners.py:118) 20",
            "not a stack line",
        ]
    )
    assert top_own(collapsed, 2) == [("handle (app.py)", 45.5), ("too_deep (intake.py)", 36.4)]
    assert top_own("", 5) == []
    # Inclusive: a frame counts once per stack it is on; the entry point on every stack is left out.
    assert top_inclusive(collapsed, 3) == [
        ("handle (app.py)", 81.8),
        ("too_deep (intake.py)", 36.4),
    ]
    assert top_inclusive("", 5) == []


def test_ingress_cpu_is_per_2xx_response_and_refusals_are_reported() -> None:
    figures = {"requests": 100.0, "non_2xx": 60.0, "load_cpu_s": 0.8, "rps": 10.0}
    out = measured(lambda: dict(figures), CpuMeter({}), publishes=False, seconds=10)
    assert out["cpu_ms_per_req.load"] == pytest.approx(20.0)  # 0.8 s over 40 answers, not 100
    assert out["non_2xx"] == 60.0
    assert ok_responses({"requests": 5.0, "non_2xx": 5.0}) == 1  # a divisor, never 0


def test_bench_servers_start_pinned_under_taskset_with_all_their_threads() -> None:
    argv = [sys.executable, "-m", "bench.noop_ingress"]
    assert pinned(argv, 0, cores=1) == (argv, "any")
    command, where = pinned(argv, 0, cores=2)
    assert command == ["taskset", "-c", "0", *argv]
    assert where == "0"
    threads = subprocess.run(
        [
            *command[:3],
            sys.executable,
            "-c",
            "import os, threading\n"
            "t = threading.Thread(target=lambda: print(sorted(os.sched_getaffinity(0))))\n"
            "t.start(); t.join()",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert threads.stdout.strip() == "[0]"


def test_a_baseline_tree_older_than_the_cli_package_runs_its_own_cli_module(tmp_path: Path) -> None:
    assert cli_module(tmp_path) == "spakinect_pipeline.cli"
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "main.py").write_text("")
    assert cli_module(tmp_path) == "cli.main"


def test_e2e_before_after_ratios_skip_missing_figures() -> None:
    from bench.e2e_latency import versus

    after = {"e2e_ms_p50": 50.0, "e2e_ms_p99": None, "cpu_ms_per_event": {"kafka": 1.0, "new": 2.0}}
    before = {"e2e_ms_p50": 100.0, "e2e_ms_p99": 300.0, "cpu_ms_per_event": {"kafka": 2.0}}
    assert versus(after, before) == {
        "ratio_e2e_ms_p50": 0.5,
        "ratio_cpu_ms_per_event": {"kafka": 0.5},
    }


def test_e2e_cpu_ratios_are_also_given_over_the_load_generators() -> None:
    """The load generator's work is the same in both runs: its ratio is the machine's drift."""
    from bench.e2e_latency import versus

    after = {"cpu_ms_per_event": {"kafka": 0.9, "load": 0.9, "total": 1.8}}
    before = {"cpu_ms_per_event": {"kafka": 1.0, "load": 1.0, "total": 2.4}}
    assert versus(after, before)["ratio_cpu_ms_per_event_over_load"] == {
        "kafka": 1.0,
        "load": 1.0,
        "total": 0.833,
    }
