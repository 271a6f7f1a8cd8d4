"""`make up`'s supervisor: ready, writes stack.env, and leaves no process behind on SIGTERM."""

from __future__ import annotations

from pathlib import Path

import httpx
import psutil
import pytest

from devstack.background import running_stack

pytestmark = pytest.mark.integration


def test_up_reaches_ready_and_stops_every_child(tmp_path: Path) -> None:
    log = (tmp_path / "up.log").open("wb")
    with running_stack(tmp_path / "data", log=log, timeout=120) as stack:
        assert set(stack.env) >= {
            "KAFKA_BOOTSTRAP_SERVERS",
            "POSTGRES_DSN",
            "SMTP_HOST",
            "SMTP_PORT",
            "INGRESS_URL",
            "MAIL_DIR",
        }
        assert httpx.get(stack.env["INGRESS_URL"] + "/readyz", timeout=5).status_code == 200
        children = psutil.Process(stack.process.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        for expected in ("kafka.Kafka", "postgres", "worker dedupe", "worker email", "ingress"):
            assert expected in names
    assert stack.process.returncode == 0, (tmp_path / "up.log").read_text()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"left behind: {[p.pid for p in alive]}"
