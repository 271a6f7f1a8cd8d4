"""A competing CPU load: busy processes that keep every core saturated during a run.

Timing bugs (a rebalance racing a batch, a fetch racing a seek) hide on an
idle machine; a run with the CPU starved shows whether every promise still
holds when each process gets its time slices late.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
from collections.abc import Iterator


def _spin() -> None:
    os.nice(0)  # same priority as the stack: a real neighbour, not a polite one
    while True:
        pass


@contextlib.contextmanager
def starved(processes: int) -> Iterator[int]:
    """Run ``processes`` busy loops until the block ends; yields how many run."""
    context = multiprocessing.get_context("spawn")
    spinners = [context.Process(target=_spin, daemon=True) for _ in range(processes)]
    for spinner in spinners:
        spinner.start()
    try:
        yield len(spinners)
    finally:
        for spinner in spinners:
            spinner.kill()
        for spinner in spinners:
            spinner.join(5)
