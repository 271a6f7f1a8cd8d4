"""CPU cost per event: user+sys CPU of every process taking part, over the measured span.

On a shared 2-core machine rates and profile percentages move with the
neighbours' load; CPU seconds spent per event move much less, so they are
what ranks fixes. A participant is a named process *tree*: the process and
all its descendants (Postgres: the postmaster and every backend), counted as

    sum over live members of (user + sys + user and sys of reaped children)

so a backend that exits inside the span still counts: its time moves into its
parent's ``children_*`` times when it is reaped. The span's cost is the
difference of two such snapshots. Load generators that run to completion
(wrk, hey) are measured by :func:`child_cpu_s` around their run instead.

Figures are in core-milliseconds per event (1.0 = one core busy for 1 ms).
"""

from __future__ import annotations

import resource
from collections.abc import Callable, Iterable, Mapping
from contextlib import suppress
from typing import Any

import psutil

TOTAL = "total"


def _own_and_reaped(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system + times.children_user + times.children_system)


def tree_cpu_s(pid: int) -> float:
    """Cumulative CPU seconds of ``pid`` and its descendants (0 if it is gone)."""
    try:
        root = psutil.Process(pid)
        members = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for member in members:
        with suppress(psutil.Error):  # exited between listing and reading: in its parent's now
            total += _own_and_reaped(member)
    return total


def child_cpu_s() -> float:
    """CPU seconds of this process's reaped children so far (load generators run to the end)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


class CpuMeter:
    """Snapshots of named process trees; ``pids`` maps a participant's name to its root pid."""

    def __init__(self, pids: Mapping[str, int | None]) -> None:
        self.pids = {name: pid for name, pid in pids.items() if pid is not None}

    def snapshot(self) -> dict[str, float]:
        return {name: tree_cpu_s(pid) for name, pid in self.pids.items()}


def spent(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """CPU seconds each participant spent between two snapshots (never negative)."""
    return {name: max(0.0, after[name] - before.get(name, 0.0)) for name in after}


def cost_per_event(cpu_s: Mapping[str, float], events: int) -> dict[str, float]:
    """Core-ms per event for each participant and their ``total``."""
    if events <= 0:
        raise ValueError("CPU per event needs at least one event")
    per = {name: round(seconds * 1000 / events, 4) for name, seconds in cpu_s.items()}
    per[TOTAL] = round(sum(cpu_s.values()) * 1000 / events, 4)
    return per


def cpu_columns(cpu_s: Mapping[str, float], events: int, wall_s: float) -> dict[str, Any]:
    """The report's CPU columns: core-ms/event and cores busy, per participant and in total."""
    cores = {name: round(seconds / wall_s, 3) for name, seconds in cpu_s.items()}
    cores[TOTAL] = round(sum(cpu_s.values()) / wall_s, 3)
    return {"cpu_ms_per_event": cost_per_event(cpu_s, events), "cpu_cores": cores}


def median_columns(runs: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Per-key median of several runs' figures (the keys of the first run)."""
    import statistics

    listed = list(runs)
    return {key: round(statistics.median(r[key] for r in listed), 4) for key in listed[0]}


def classify_by_cmdline(rules: Mapping[str, Callable[[list[str]], bool]]) -> Callable[[int], str]:
    """A pid → participant name function from ``rules`` (first match; else the process name)."""

    def name_of(pid: int) -> str:
        try:
            process = psutil.Process(pid)
            cmdline: list[str] = process.cmdline()
            fallback = str(process.name())
        except psutil.Error:
            return "gone"
        for name, matches in rules.items():
            if matches(cmdline):
                return name
        return fallback

    return name_of


def children_by_name(parent: int, name_of: Callable[[int], str]) -> dict[str, int]:
    """Direct children of ``parent`` by participant name (each one a tree for :class:`CpuMeter`).

    Two children of the same name get ``name``, ``name-2``, … in pid order.
    """
    named: dict[str, int] = {}
    try:
        children = sorted(psutil.Process(parent).children(), key=lambda p: p.pid)
    except psutil.Error:
        return named
    for child in children:
        base = name_of(child.pid)
        name, n = base, 1
        while name in named:
            n += 1
            name = f"{base}-{n}"
        named[name] = child.pid
    return named
