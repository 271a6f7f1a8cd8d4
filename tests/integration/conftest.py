"""A running pipeline (ingress + one worker per stage, real processes) on the real services.

Each test module gets its own topic prefix, consumer groups, database and
clinic address, so modules never see each other's events. Postgres and SMTP
are reached through :class:`~tests.helpers.TcpProxy` so tests can cut them.
"""

from __future__ import annotations

import asyncio
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from devstack.kafka import KafkaBroker
from devstack.phi_keys import new_phi_env
from devstack.postgres import create_database
from devstack.process import ManagedProcess, free_port
from devstack.smtp_catcher import read_mails
from devstack.stack import http_ok, pipeline_process, stage_argv
from events.topics import Topics
from sinks.postgres.migrate import migrate
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.phi.crypto import Keyring, keyring_from
from spakinect_pipeline.topic_admin import ensure_topics
from streams.stages import STAGE_NAMES
from tests.helpers import TcpProxy, wait_consumed, wait_group_stable, wait_until
from tests.services import Services

from .console_fixtures import browser, console  # noqa: F401 - the console tests' fixtures

STAGES = STAGE_NAMES


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker of its own (not the session's), so killing it cannot disturb other tests."""
    broker = KafkaBroker.on_free_ports(tmp_path, partitions=2)
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


@dataclass
class Pipeline:
    services: Services
    env: dict[str, str]
    topics: Topics
    dsn: str
    clinic: str
    logs: Path
    pg_proxy: TcpProxy
    smtp_proxy: TcpProxy
    processes: dict[str, ManagedProcess] = field(default_factory=dict)
    web_ports: dict[str, int] = field(default_factory=dict)

    @property
    def keyring(self) -> Keyring:
        """The module's patient-data keys (to read what the writer sealed)."""
        return keyring_from(self.env["PHI_ENCRYPTION_KEYS"], self.env["PHI_INDEX_KEY"])

    @property
    def ingress_url(self) -> str:
        return f"http://127.0.0.1:{self.env['INGRESS_PORT']}"

    async def metrics(self, stage: str) -> str:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(f"http://127.0.0.1:{self.web_ports[stage]}/metrics")
        response.raise_for_status()
        return response.text

    def group(self, stage: str) -> str:
        return f"{self.env['STREAMS_APP_ID']}-{stage}"

    async def consumed(self, stage: str, topic: str, timeout: float = 60) -> None:
        """Wait until ``stage`` has handled (committed past) everything on ``topic`` now."""
        await wait_consumed(self.services.kafka_bootstrap, self.group(stage), topic, timeout)

    async def restart(self, name: str, *, wipe_state: bool = False) -> None:
        """Stop and start ``name``; ``wipe_state`` deletes its local table state first, so
        what it knows afterwards can only have come from the changelog."""
        await self.stop(name)
        if wipe_state:
            shutil.rmtree(Path(self.env["STREAMS_STATE_DIR"]) / name)
        await self.start(name)

    async def start(self, name: str, stage: str | None = None, members: int = 1) -> None:
        """Start ``name`` (a stage, or e.g. ``dedupe-2`` with ``stage="dedupe"``)."""
        stage = stage or name
        self.web_ports[name] = free_port()  # each worker serves /metrics on its own port
        env = {
            **self.env,
            "STREAMS_WEB_PORT": str(self.web_ports[name]),
            # Each member its own state, as on separate hosts: moved state must come from
            # the changelog, not from the other member's RocksDB files.
            "STREAMS_STATE_DIR": str(Path(self.env["STREAMS_STATE_DIR"]) / name),
        }
        unique_name = f"{name}-{uuid.uuid4().hex[:4]}"
        process = pipeline_process(unique_name, stage_argv(stage), env, self.logs)
        self.processes[name] = process
        process.start()
        if name == "ingress":
            await asyncio.to_thread(
                process.wait_ready,
                lambda: http_ok(f"{self.ingress_url}/readyz"),
                60,
                "ingress ready",
            )
        else:
            await wait_group_stable(self.services.kafka_bootstrap, self.group(stage), 90, members)

    async def stop(self, name: str) -> None:
        await asyncio.to_thread(self.processes[name].stop, 30)

    async def kill(self, name: str) -> None:
        await asyncio.to_thread(self.processes[name].kill)

    async def post(self, body: Any, route: str = "/webhooks/visit-completed") -> httpx.Response:
        async with httpx.AsyncClient(timeout=15) as client:
            return await client.post(
                self.ingress_url + route, json=body, headers={"User-Agent": "Spakinect-Webhook/1.0"}
            )

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        conn = await asyncpg.connect(self.dsn)
        try:
            return list(await conn.fetch(sql, *args))
        finally:
            await conn.close()

    async def wait_rows(
        self, sql: str, *args: Any, count: int = 1, timeout: float = 30
    ) -> list[asyncpg.Record]:
        async def enough() -> list[asyncpg.Record] | None:
            rows = await self.fetch(sql, *args)
            return rows if len(rows) >= count else None

        rows: list[asyncpg.Record] = await wait_until(enough, timeout, f"{count} row(s): {sql}")
        return rows

    def mails(self) -> list[Any]:
        assert self.services.mail_dir is not None, "MAIL_DIR is needed to read sent mail"
        return read_mails(self.services.mail_dir, self.clinic)


@pytest.fixture(scope="module")
async def pipeline(
    services: Services, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> AsyncIterator[Pipeline]:
    """A module may set ``PIPELINE_ENV = {...}`` to override settings (e.g. DEDUPE_WINDOW)."""
    overrides: dict[str, str] = getattr(request.module, "PIPELINE_ENV", {})
    unique = uuid.uuid4().hex[:8]
    tmp = tmp_path_factory.mktemp(f"pipeline-{unique}")
    direct_dsn = await create_database(services.postgres_dsn, f"test_{unique}")
    host_port = services.postgres_dsn.split("@", 1)[1].split("/", 1)[0]
    pg_host, _, pg_port = host_port.rpartition(":")
    pg_proxy = TcpProxy(pg_host, int(pg_port))
    smtp_proxy = TcpProxy(services.smtp_host, services.smtp_port)
    await pg_proxy.up()
    await smtp_proxy.up()
    proxied_dsn = direct_dsn.replace(host_port, f"127.0.0.1:{pg_proxy.port}")
    kafka = KafkaSettings(
        bootstrap_servers=[services.kafka_bootstrap],
        topic_prefix=f"t{unique}.",
        partitions=int(overrides.get("KAFKA_PARTITIONS", "3")),
    )
    await ensure_topics(kafka)
    await migrate(direct_dsn)
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": services.kafka_bootstrap,
        "KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "KAFKA_PARTITIONS": str(kafka.partitions),
        "POSTGRES_DSN": proxied_dsn,
        "SMTP_HOST": "127.0.0.1",
        "SMTP_PORT": str(smtp_proxy.port),
        "EMAIL_TO": f"clinic-{unique}@example.test",
        "EMAIL_FROM": "gfe@pipeline.test",
        "STREAMS_APP_ID": f"test-{unique}",
        "STREAMS_STATE_DIR": str(tmp / "state"),
        "STREAMS_WEB_PORT": "0",
        "STREAMS_RETRY_MAX_BACKOFF_S": "2",
        "INGRESS_ALLOW_UNAUTHENTICATED": "true",
        "INGRESS_PORT": str(free_port()),
        "LOG_FORMAT": "json",
        "LOG_LEVEL": "INFO",
        **new_phi_env(),
        **overrides,
    }
    pipe = Pipeline(
        services,
        env,
        Topics(kafka.topic_prefix),
        direct_dsn,
        env["EMAIL_TO"],
        tmp / "logs",
        pg_proxy,
        smtp_proxy,
    )
    try:
        await asyncio.gather(*(pipe.start(name) for name in ("ingress", *STAGES)))
        yield pipe
    finally:
        await asyncio.gather(*(asyncio.to_thread(p.stop, 30) for p in pipe.processes.values()))
        await pg_proxy.down()
        await smtp_proxy.down()
