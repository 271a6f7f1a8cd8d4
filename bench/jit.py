"""How busy a JVM's JIT compilers are: the bench warms the broker until they settle.

A fresh broker spends most of its CPU in the C2 compiler for the first
minute of live traffic on this 2-core box (per-thread CPU from /proc: C2
threads 60 % of the broker's CPU 40 s into a 500 visits/s run, 4 % a minute
later). A production broker compiled its request path long ago, so a bench
that charged the live path for it measured the JIT, not the pipeline.
Linux only (``/proc/<pid>/task``); elsewhere it reports nothing and the
warm-up runs once.
"""

from __future__ import annotations

import os
from pathlib import Path

COMPILER_THREADS = ("C1 CompilerThre", "C2 CompilerThre")  # /proc truncates names to 15


def compiler_cpu_s(pid: int) -> float | None:
    """CPU seconds the JVM ``pid``'s compiler threads have used; None where not readable."""
    tasks = Path(f"/proc/{pid}/task")
    if not tasks.is_dir():
        return None
    ticks = 0
    for task in tasks.iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue  # a thread that ended
        name = stat[stat.index("(") + 1 : stat.rindex(")")]
        if name.startswith(COMPILER_THREADS):
            fields = stat[stat.rindex(")") + 2 :].split()
            ticks += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")
