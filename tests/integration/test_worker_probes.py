"""Worker probes against real services: /healthz and /readyz of every stage, and the
Postgres stage's /readyz going 503 when its Postgres is killed or hangs, and back.

The Postgres here is this module's own server (not the session's), so killing
it cannot disturb other tests.
"""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil
import pytest

from devstack.phi_keys import new_phi_env
from devstack.postgres import LocalPostgres
from devstack.process import ManagedProcess, free_port
from devstack.stack import pipeline_process, stage_argv
from events.registry import VISIT_COMPLETED
from events.topics import Topics
from sinks.email.settings import SmtpSettings
from sinks.postgres.migrate import migrate
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.publisher import KafkaPublisher
from spakinect_pipeline.topic_admin import ensure_topics
from streams.probes import CHECK_TIMEOUT_S, CheckFailed, kafka_check, smtp_check
from streams.stages import STAGE_NAMES as STAGES
from tests.helpers import TcpProxy, wait_until
from tests.services import Services

pytestmark = pytest.mark.integration
# A probe's whole answer once the worker runs: its checks run concurrently, each awaited
# CHECK_TIMEOUT_S at most; the rest is slack for this shared, loaded host.
ANSWER_WITHIN_S = CHECK_TIMEOUT_S + 1.5


@dataclass
class Workers:
    postgres: LocalPostgres
    ports: dict[str, int] = field(default_factory=dict)
    processes: dict[str, ManagedProcess] = field(default_factory=dict)

    async def get(self, stage: str, path: str) -> tuple[int, dict[str, Any], float]:
        """Status, body and how long the answer took."""
        began = time.monotonic()
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(f"http://127.0.0.1:{self.ports[stage]}{path}")
        return response.status_code, response.json(), time.monotonic() - began

    async def wait_status(
        self, stage: str, status: int, timeout: float, *, bounded: bool = True
    ) -> dict[str, Any]:
        """Poll /readyz until ``status``; each answer within the bound unless starting up."""

        async def answered() -> dict[str, Any] | None:
            try:
                code, body, took = await self.get(stage, "/readyz")
            except httpx.HTTPError:
                return None
            assert not bounded or took < ANSWER_WITHIN_S, f"/readyz took {took:.2f}s"
            return body if code == status else None

        body: dict[str, Any] = await wait_until(answered, timeout, f"{stage} /readyz {status}", 0.5)
        return body

    def postgres_signal(self, sig: signal.Signals) -> None:
        """Signal the server and its backends (each backend leads its own session)."""
        assert self.postgres.process is not None
        assert self.postgres.process.pid is not None
        server = psutil.Process(self.postgres.process.pid)
        for process in [server, *server.children(recursive=True)]:
            process.send_signal(sig)


@pytest.fixture(scope="module")
async def workers(
    services: Services, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Workers]:
    tmp = tmp_path_factory.mktemp("probes")
    postgres = LocalPostgres(tmp / "pg", tmp / "logs", port=free_port())
    await asyncio.to_thread(postgres.start)
    unique = uuid.uuid4().hex[:8]
    kafka = KafkaSettings(
        bootstrap_servers=[services.kafka_bootstrap], topic_prefix=f"p{unique}.", partitions=2
    )
    await ensure_topics(kafka)
    await migrate(postgres.dsn)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": services.kafka_bootstrap,
        "KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "KAFKA_PARTITIONS": "2",
        "POSTGRES_DSN": postgres.dsn,
        "SMTP_HOST": services.smtp_host,
        "SMTP_PORT": str(services.smtp_port),
        "EMAIL_TO": "clinic@example.test",
        "STREAMS_APP_ID": f"probes-{unique}",
        "LOG_FORMAT": "json",
        **new_phi_env(),
    }
    running = Workers(postgres)
    for stage in STAGES:
        running.ports[stage] = free_port()
        process = pipeline_process(
            f"probe-{stage}-{unique[:4]}",
            stage_argv(stage),
            {
                **env,
                "STREAMS_WEB_PORT": str(running.ports[stage]),
                "STREAMS_STATE_DIR": str(tmp / "state" / stage),
            },
            tmp / "logs",
        )
        running.processes[stage] = process
        process.start()
    try:
        await asyncio.gather(
            *(running.wait_status(stage, 200, 90, bounded=False) for stage in STAGES)
        )
        yield running
    finally:
        await asyncio.gather(*(asyncio.to_thread(p.stop, 30) for p in running.processes.values()))
        await asyncio.to_thread(postgres.stop)


async def test_every_stage_is_live_and_ready_with_its_checks(workers: Workers) -> None:
    expected = {"dedupe": {"kafka"}, "postgres": {"kafka", "postgres"}, "email": {"kafka", "smtp"}}
    for stage in STAGES:
        code, body, _ = await workers.get(stage, "/healthz")
        assert (code, body) == (200, {"status": "ok"})
        code, body, _ = await workers.get(stage, "/readyz")
        assert code == 200, body
        assert set(body["checks"]) == expected[stage]
        assert set(body["checks"].values()) == {"ok"}
        assert body["partitions"] >= 1  # one worker per group: all its source partitions


async def test_postgres_killed_makes_readyz_503_and_back(workers: Workers) -> None:
    workers.postgres_signal(signal.SIGKILL)
    await asyncio.to_thread(workers.postgres.process.popen.wait, 10)  # type: ignore[union-attr]
    try:
        body = await workers.wait_status("postgres", 503, 20)
        assert "postgres" in body["problems"]
        code, _, took = await workers.get("postgres", "/healthz")
        assert code == 200
        assert took < 1.0
        code, _, _ = await workers.get("dedupe", "/readyz")
        assert code == 200  # no sink: Postgres is not its concern
    finally:
        await asyncio.to_thread(workers.postgres.start)
    body = await workers.wait_status("postgres", 200, 30)
    assert body["checks"]["postgres"] == "ok"


async def test_hung_postgres_answers_503_within_the_bound_and_recovers(workers: Workers) -> None:
    workers.postgres_signal(signal.SIGSTOP)
    try:
        body = await workers.wait_status("postgres", 503, 20)
        assert "postgres" in body["problems"]
        code, _, took = await workers.get("postgres", "/readyz")
        assert code == 503
        assert took < ANSWER_WITHIN_S
    finally:
        workers.postgres_signal(signal.SIGCONT)
    await workers.wait_status("postgres", 200, 30)


async def test_smtp_check_fails_while_the_relay_is_cut_and_passes_again(
    services: Services,
) -> None:
    proxy = TcpProxy(services.smtp_host, services.smtp_port)
    await proxy.up()
    check = smtp_check(SmtpSettings(host="127.0.0.1", port=proxy.port))
    try:
        await check()
        await proxy.down()
        with pytest.raises(CheckFailed, match="smtp: "):
            await check()
        await proxy.up()
        await check()
    finally:
        await proxy.down()


async def test_kafka_check_fails_on_missing_topics_and_unreachable_brokers(
    services: Services,
) -> None:
    reachable = KafkaSettings(bootstrap_servers=[services.kafka_bootstrap])
    unreachable = KafkaSettings(bootstrap_servers=[f"127.0.0.1:{free_port()}"])
    missing = f"absent-{uuid.uuid4().hex[:8]}"
    for settings, topics in (
        (reachable, [missing]),
        (unreachable, [Topics().clean(VISIT_COMPLETED)]),
    ):
        publisher = KafkaPublisher(settings, client_id="probe-test")
        try:
            began = time.monotonic()
            with pytest.raises(CheckFailed, match="no metadata"):
                await kafka_check(publisher, topics)()
            assert time.monotonic() - began < ANSWER_WITHIN_S
        finally:
            await publisher.stop()
