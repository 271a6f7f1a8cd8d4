"""`make up`'s supervisor: ready, writes stack.env, and leaves no process behind on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from tests.services import REPO

pytestmark = pytest.mark.integration


def test_up_reaches_ready_and_stops_every_child(tmp_path: Path) -> None:
    root = tmp_path / "data"
    log = (tmp_path / "up.log").open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "POSTGRES_"))}
    up = subprocess.Popen(
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
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    try:
        stack_env = root / "stack.env"
        deadline = time.monotonic() + 120
        while not stack_env.exists():
            assert up.poll() is None, (tmp_path / "up.log").read_text()
            assert time.monotonic() < deadline, "no stack.env within 120 s"
            time.sleep(0.5)
        values = dict(line.split("=", 1) for line in stack_env.read_text().splitlines())
        assert set(values) >= {
            "KAFKA_BOOTSTRAP_SERVERS",
            "POSTGRES_DSN",
            "SMTP_HOST",
            "SMTP_PORT",
            "INGRESS_URL",
            "MAIL_DIR",
        }
        assert httpx.get(values["INGRESS_URL"] + "/readyz", timeout=5).status_code == 200
        children = psutil.Process(up.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        for expected in ("kafka.Kafka", "postgres", "worker dedupe", "worker email", "ingress"):
            assert expected in names
    finally:
        up.send_signal(signal.SIGTERM)
        code = up.wait(60)
    assert code == 0, (tmp_path / "up.log").read_text()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"left behind: {[p.pid for p in alive]}"
