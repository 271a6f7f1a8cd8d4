"""Run ``python -m devstack up`` in the background on free ports (benchmarks, tests)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from devstack import REPO
from devstack.env_file import read_env_file


@dataclass
class RunningStack:
    process: subprocess.Popen[bytes]
    env: dict[str, str]  # the contents of stack.env


@contextlib.contextmanager
def running_stack(
    root: Path,
    *,
    log: IO[bytes] | int = subprocess.DEVNULL,
    timeout: float = 180,
    extra_env: dict[str, str] | None = None,
    tree: Path = REPO,
    args: tuple[str, ...] = (),
) -> Iterator[RunningStack]:
    """Start the whole stack under ``root``; yield once ``stack.env`` exists; SIGTERM on exit.

    ``tree``: where the stack's code comes from (another checkout for a benchmark's
    baseline; give ``extra_env`` a ``PYTHONPATH`` pointing at it too). ``args``: more
    ``devstack up`` options (``--secured``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "POSTGRES_"))}
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "devstack",
            "up",
            "--root",
            str(root),
            "--free-ports",
            "--cache",
            str(REPO / ".cache"),
            *args,
        ],
        cwd=tree,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**env, **(extra_env or {})},
    )
    try:
        stack_env = root / "stack.env"
        deadline = time.monotonic() + timeout
        while not stack_env.exists():
            if process.poll() is not None:
                raise RuntimeError(f"devstack up exited with {process.returncode} before ready")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {stack_env} within {timeout:.0f}s")
            time.sleep(0.5)
        values = read_env_file(stack_env)
        yield RunningStack(process, values)
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(60)
