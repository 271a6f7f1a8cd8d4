"""An ingress worker whose supervisor died before the worker's app was built still exits."""

import subprocess
import sys
import time

from ingress.workers import ORPHAN_CHECK_S, SUPERVISOR_PID


def test_a_worker_watching_a_supervisor_that_is_gone_stops_itself():
    """The supervisor's pid comes from the env, not from getppid() when the factory runs:
    a worker started by a supervisor killed meanwhile has init for a parent."""
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    dead_pid = int(gone.stdout)
    started = time.monotonic()
    worker = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import time\nfrom ingress.workers import watch_parent\nwatch_parent({dead_pid})\n"
            "time.sleep(30)\nprint('still running')",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert worker.returncode == -15, worker.stderr  # SIGTERM: the graceful stop
    assert "still running" not in worker.stdout
    assert time.monotonic() - started < 10 + ORPHAN_CHECK_S


def test_a_worker_built_after_its_supervisor_died_stops_itself(tmp_path):
    """uvicorn's factory runs in the worker after its imports; the supervisor may be gone."""
    import os

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    env = {
        **os.environ,
        SUPERVISOR_PID: gone.stdout.strip(),
        "INGRESS_ALLOW_UNAUTHENTICATED": "true",
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path),
    }
    worker = subprocess.run(
        [
            sys.executable,
            "-c",
            "import time\nfrom ingress.workers import worker_app\nworker_app()\n"
            "time.sleep(30)\nprint('still running')",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    assert worker.returncode == -15, worker.stderr[-2000:]
