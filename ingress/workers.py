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
producers flushed.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from fastapi import FastAPI

from ingress.app import create_app, uvicorn_options
from ingress.metrics import MULTIPROCESS_DIR
from ingress.settings import IngressSettings
from spakinect_pipeline.config import LogSettings, load_settings
from spakinect_pipeline.logs import configure_logging


def worker_app() -> FastAPI:
    """The app of one worker process (uvicorn's factory): logging and settings from env."""
    from prometheus_client import multiprocess

    configure_logging(load_settings(LogSettings))
    # A worker that stops cleanly takes its live gauges (requests in flight) with it.
    atexit.register(multiprocess.mark_process_dead, os.getpid())
    return create_app()


def serve_workers(settings: IngressSettings) -> None:
    """Run ``settings.workers`` ingress processes on ``settings.host:port`` until SIGTERM."""
    import uvicorn

    own_dir = MULTIPROCESS_DIR not in os.environ
    metrics_dir = os.environ.get(MULTIPROCESS_DIR) or tempfile.mkdtemp(prefix="spakinect-ingress-")
    # The workers are spawned (fresh interpreters): they read all of this from the env.
    os.environ.update(
        {
            MULTIPROCESS_DIR: metrics_dir,
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
        if own_dir:
            shutil.rmtree(metrics_dir, ignore_errors=True)
