"""`make up`: on its fixed ports with every worker, end to end; and its supervisor leaves no
process behind on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import uuid
from pathlib import Path

import asyncpg
import httpx
import psutil
import pytest

from devstack import REPO
from devstack.background import running_stack
from devstack.env_file import read_env_file
from devstack.smtp_catcher import read_mails
from events.samples import sample_visit
from tests.helpers import wait_until

pytestmark = pytest.mark.integration
FIXED_PORTS = {
    "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:9092",
    "SMTP_PORT": "1025",
    "INGRESS_URL": "http://127.0.0.1:8000",
}
WORKERS = ("worker dedupe", "worker postgres", "worker email")


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
        for expected in ("kafka.Kafka", "postgres", *WORKERS, "ingress"):
            assert expected in names
    assert stack.process.returncode == 0, (tmp_path / "up.log").read_text()
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"left behind: {[p.pid for p in alive]}"


def make_up(root: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """``make up`` itself, its data under ``root`` (not the repository's ``.data``)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "POSTGRES_"))}
    with log_path.open("wb") as log:
        return subprocess.Popen(
            ["make", "up", f"UP_ARGS=--root {root}"],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )


async def test_make_up_serves_a_visit_end_to_end_on_its_fixed_ports(tmp_path: Path) -> None:
    """The real target (ports 9092/5432/1025/8000): a posted visit becomes a row and an email,
    so every worker ran; SIGTERM to make stops every child."""
    root, log_path = tmp_path / "data", tmp_path / "up.log"
    make = make_up(root, log_path)
    try:

        async def ready() -> bool:
            assert make.poll() is None, log_path.read_text()
            return (root / "stack.env").exists()

        await wait_until(ready, 240, "make up to write stack.env", 0.5)
        stack = read_env_file(root / "stack.env")
        assert {k: stack[k] for k in FIXED_PORTS} == FIXED_PORTS
        assert "@127.0.0.1:5432/" in stack["POSTGRES_DSN"]
        children = psutil.Process(make.pid).children(recursive=True)
        names = " ".join(" ".join(c.cmdline()) for c in children)
        for expected in ("kafka.Kafka", "postgres", *WORKERS, "ingress"):
            assert expected in names

        gfe_id = f"gfe_up_{uuid.uuid4().hex[:6]}"
        async with httpx.AsyncClient(timeout=15) as client:
            response = await client.post(
                f"{stack['INGRESS_URL']}/webhooks/visit-completed", json=sample_visit(gfe_id)
            )
        assert response.status_code == 200

        async def row() -> bool:
            conn = await asyncpg.connect(stack["POSTGRES_DSN"])
            try:
                query = "SELECT 1 FROM gfe_visits WHERE gfe_id = $1"
                return await conn.fetchval(query, gfe_id) == 1
            finally:
                await conn.close()

        def emailed() -> bool:
            mails = read_mails(Path(stack["MAIL_DIR"]), "clinic@example.test")
            return any(gfe_id in str(m["Subject"]) for m in mails)

        await wait_until(row, 60, "the visit row (dedupe and postgres workers)")
        await wait_until(lambda: asyncio.to_thread(emailed), 60, "the email (email worker)")
    finally:
        make.send_signal(signal.SIGTERM)
        await asyncio.to_thread(make.wait, 90)
    _, alive = psutil.wait_procs(children, timeout=30)
    assert alive == [], f"left behind: {[p.pid for p in alive]}"


async def test_up_secured_runs_the_pipeline_on_sasl_ssl_kafka_and_tls_only_postgres(
    tmp_path: Path,
) -> None:
    """``make up UP_ARGS=--secured``: stack.env carries the SASL and TLS settings, a visit
    becomes a row (over verify-full) and an email; no password in the output or any log."""
    root, log_path = tmp_path / "data", tmp_path / "up.log"
    with (
        log_path.open("wb") as log,
        running_stack(root, log=log, timeout=180, args=("--secured",)) as stack,
    ):
        env = stack.env
        assert env["KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"
        assert env["KAFKA_SSL_CAFILE"] == str(root / "pki" / "ca.pem")
        assert "sslmode=verify-full" in env["POSTGRES_DSN"]
        gfe_id = f"gfe_sec_{uuid.uuid4().hex[:6]}"
        async with httpx.AsyncClient(timeout=15) as client:
            response = await client.post(
                f"{env['INGRESS_URL']}/webhooks/visit-completed", json=sample_visit(gfe_id)
            )
        assert response.status_code == 200

        async def row() -> bool:
            conn = await asyncpg.connect(env["POSTGRES_DSN"])
            try:
                assert await conn.fetchval(
                    "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
                )
                found = await conn.fetchval("SELECT 1 FROM gfe_visits WHERE gfe_id = $1", gfe_id)
                return bool(found == 1)
            finally:
                await conn.close()

        def emailed() -> bool:
            mails = read_mails(Path(env["MAIL_DIR"]), "clinic@example.test")
            return any(gfe_id in str(m["Subject"]) for m in mails)

        await wait_until(row, 90, "the visit row (dedupe and postgres workers)")
        await wait_until(lambda: asyncio.to_thread(emailed), 90, "the email (email worker)")
    assert stack.process.returncode == 0, log_path.read_text()
    passwords = [
        env["KAFKA_SASL_PASSWORD"],
        (root / "postgres-tls" / "superuser.secret").read_text().strip(),
    ]
    for path in [log_path, *(root / "logs").iterdir()]:
        text = path.read_text(errors="replace")
        for password in passwords:
            assert password not in text, f"a password in {path.name}"
