"""Several ingress processes on one port (``INGRESS_WORKERS``), one ``/metrics`` for all.

One ingress process is one Python thread: on a host with more cores than
replicas, ``INGRESS_WORKERS=N`` runs N processes behind one listening socket
(uvicorn's supervisor; the kernel hands each new connection to one of them)
instead of N containers. Each worker builds its own app and Kafka producer
from the same env. Prometheus counters live in per-process files under
``PROMETHEUS_MULTIPROC_DIR`` (a fresh temporary folder unless the operator
sets one), which every worker's ``/metrics`` reads, so a scrape sees the sum
over workers whichever worker answers it. SIGTERM to the supervisor stops
every worker the way one ingress stops: in-flight requests are answered,
producers flushed. A worker whose supervisor dies (SIGKILL, OOM) stops itself the
same way, so no orphan keeps the port; the next start removes the dead
supervisor's metrics folder.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

from fastapi import FastAPI

from ingress.app import create_app, uvicorn_options
from ingress.metrics import MULTIPROCESS_DIR, multiprocess_dir, pid_alive, reset_multiprocess_dir
from ingress.settings import IngressSettings
from spakinect_pipeline.config import LogSettings, load_settings
from spakinect_pipeline.logs import configure_logging

# Owned metrics folders are named after their supervisor's pid: ``<prefix><pid>-<random>``.
OWNED_PREFIX = "spakinect-ingress-"
ORPHAN_CHECK_S = 0.5
# The supervisor's pid, set before it spawns the workers: a worker still importing when
# its supervisor dies would otherwise take its new parent (init) for the supervisor.
SUPERVISOR_PID = "SPAKINECT_INGRESS_SUPERVISOR_PID"


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn's factory): logging and settings from env."""
    configure_logging(load_settings(LogSettings))
    supervisor = os.environ.get(SUPERVISOR_PID, "")
    watch_parent(int(supervisor) if supervisor.isdigit() else os.getppid())
    return create_app()


def watch_parent(parent: int) -> None:
    """SIGTERM this worker (a graceful stop: requests answered, producer flushed) once its
    supervisor is gone; an orphan would keep the listening socket and its metrics files."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(ORPHAN_CHECK_S)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def remove_dead_owned_dirs(parent: Path) -> list[Path]:
    """Remove our metrics folders whose supervisor no longer runs (it was killed before
    its own clean-up); return them."""
    removed = []
    for folder in parent.glob(OWNED_PREFIX + "*-*"):
        pid = folder.name.removeprefix(OWNED_PREFIX).split("-", 1)[0]
        mine = folder.is_dir() and folder.stat().st_uid == os.getuid()
        if mine and pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def metrics_folder() -> tuple[str, bool]:
    """The workers' shared metrics folder and whether this supervisor owns (and removes) it.

    An operator's folder is emptied of a previous run's files; otherwise a fresh temporary
    one, after removing those a killed supervisor left behind.
    """
    operator = multiprocess_dir()
    if operator is not None:
        reset_multiprocess_dir(operator)
        return operator, False
    remove_dead_owned_dirs(Path(tempfile.gettempdir()))
    return tempfile.mkdtemp(prefix=f"{OWNED_PREFIX}{os.getpid()}-"), True


def serve_workers(settings: IngressSettings) -> None:
    """Run ``settings.workers`` ingress processes on ``settings.host:port`` until SIGTERM."""
    import uvicorn

    metrics_dir, owned = metrics_folder()
    # The workers are spawned (fresh interpreters): they read all of this from the env.
    os.environ.update(
        {
            MULTIPROCESS_DIR: metrics_dir,
            SUPERVISOR_PID: str(os.getpid()),
            "INGRESS_HOST": settings.host,
            "INGRESS_PORT": str(settings.port),
        }
    )
    try:
        uvicorn.run(
            "ingress.workers:worker_app",
            factory=True,
            workers=settings.workers,
            **uvicorn_options(settings),
        )
    finally:
        if owned:
            shutil.rmtree(metrics_dir, ignore_errors=True)
