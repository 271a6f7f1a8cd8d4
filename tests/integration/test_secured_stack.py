"""The pipeline on a Kafka reachable only over SASL_SSL/SCRAM and a Postgres that accepts TLS only.

Both like managed services, their certificates from one local CA
(devstack.secure_kafka, devstack.tls_postgres): the real ``topics`` and
``migrate`` commands, the ingress and the dedupe and postgres workers as
processes, a visit into ``gfe_visits`` over ``sslmode=verify-full``. A DSN
trusting another CA is refused naming POSTGRES_DSN's sslrootcert; a plaintext
connection is refused by the server; no password reaches any log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx
import pytest
import trustme

from devstack.phi_keys import new_phi_env
from devstack.postgres import create_database
from devstack.process import ManagedProcess, free_port
from devstack.secure_kafka import SecuredKafkaBroker
from devstack.stack import http_ok, pipeline_process, stage_argv
from devstack.tls_postgres import TlsPostgres, tls_dsn
from events.samples import SAMPLES
from sinks.postgres.writer import PostgresSink
from spakinect_pipeline.phi.crypto import keyring_from
from tests.helpers import wait_until

pytestmark = pytest.mark.integration


@dataclass
class SecuredServices:
    root: Path
    kafka: SecuredKafkaBroker
    postgres: TlsPostgres

    @property
    def secrets(self) -> list[str]:
        return [self.kafka.app_password, self.postgres.password]


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredServices]:
    root = tmp_path_factory.mktemp("secured-stack")
    kafka = SecuredKafkaBroker.on_free_ports(root, pki_dir=root / "pki", partitions=2)
    postgres = TlsPostgres(root / "postgres", root / "logs", pki_dir=root / "pki", port=free_port())
    postgres.start()
    try:
        kafka.start()
        try:
            yield SecuredServices(root, kafka, postgres)
        finally:
            kafka.stop()
    finally:
        postgres.stop()


@pytest.fixture(scope="module")
async def env(secured: SecuredServices) -> dict[str, str]:
    """What every process of the pipeline gets: the secured Kafka, a database of its own."""
    unique = uuid.uuid4().hex[:6]
    dsn = await create_database(secured.postgres.dsn, f"secured_{unique}")
    outside = ("KAFKA_", "STREAMS_", "POSTGRES_", "INGRESS_", "PHI_")
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(outside)},
        **secured.kafka.client_env(),
        "KAFKA_TOPIC_PREFIX": f"s{unique}.",
        "KAFKA_PARTITIONS": "2",
        "POSTGRES_DSN": dsn,
        "STREAMS_APP_ID": f"secured-{unique}",
        "STREAMS_STATE_DIR": str(secured.root / f"state-{unique}"),
        "STREAMS_WEB_PORT": "0",
        "INGRESS_ALLOW_UNAUTHENTICATED": "true",
        "INGRESS_PORT": str(free_port()),
        "LOG_LEVEL": "INFO",
        **new_phi_env(),
    }


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """``spakinect-pipeline ARGS`` as an operator runs it."""
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
async def running(
    secured: SecuredServices, env: dict[str, str]
) -> AsyncIterator[dict[str, ManagedProcess]]:
    """Topics and migrations by the real commands, then the ingress, dedupe and postgres."""
    topics = await asyncio.to_thread(cli, env, "topics")
    assert topics.returncode == 0, topics.stderr
    migrated = await asyncio.to_thread(cli, env, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert migrated.stdout.startswith("applied: 0001"), migrated.stdout
    logs = secured.root / "logs"
    processes = {
        name: pipeline_process(f"secured-{name}", stage_argv(name), env, logs)
        for name in ("ingress", "dedupe", "postgres")
    }
    for process in processes.values():
        process.start()
    try:
        url = f"http://127.0.0.1:{env['INGRESS_PORT']}/readyz"
        await asyncio.to_thread(
            processes["ingress"].wait_ready, lambda: http_ok(url), 90, "ingress ready"
        )
        yield processes
    finally:
        await asyncio.gather(*(asyncio.to_thread(p.stop, 30) for p in processes.values()))


async def test_a_visit_reaches_gfe_visits_over_sasl_ssl_and_tls_only_postgres(
    secured: SecuredServices, env: dict[str, str], running: dict[str, ManagedProcess]
) -> None:
    visit = SAMPLES["visit.completed"]
    async with httpx.AsyncClient(timeout=15) as client:
        answer = await client.post(
            f"http://127.0.0.1:{env['INGRESS_PORT']}/webhooks/visit-completed", json=visit
        )
    assert answer.status_code == 200, answer.text

    async def stored() -> list[asyncpg.Record]:
        conn = await asyncpg.connect(env["POSTGRES_DSN"])  # verify-full against the local CA
        try:
            return list(await conn.fetch("SELECT gfe_id, location_id FROM gfe_visits"))
        finally:
            await conn.close()

    rows = await wait_until(stored, 150, "the visit in gfe_visits", interval=1)
    assert [(r["gfe_id"], r["location_id"]) for r in rows] == [
        ("gfe_abc123xyz789", visit["data"]["location_id"])
    ]
    for name, process in running.items():
        assert process.alive(), f"{name} exited:\n{process.log_tail()}"


async def test_no_password_reaches_any_log(
    secured: SecuredServices, running: dict[str, ManagedProcess]
) -> None:
    """Pipeline processes, the broker's and the database's own logs."""
    files = [p for p in (secured.root / "logs").rglob("*") if p.is_file()]
    assert {"secured-ingress.log", "secured-postgres.log", "postgres-tls.log"} <= {
        p.name for p in files
    }
    for path in files:
        text = path.read_text(errors="replace")
        for secret in secured.secrets:
            assert secret not in text, f"a password in {path.name}"


async def sink_start_up_lines(dsn: str, caplog: pytest.LogCaptureFixture) -> list[str]:
    """What the postgres worker's writer logs when it cannot connect at start-up."""
    phi = new_phi_env()
    sink = PostgresSink(dsn, keyring=keyring_from(phi["PHI_ENCRYPTION_KEYS"], phi["PHI_INDEX_KEY"]))
    caplog.clear()
    with caplog.at_level(logging.INFO):
        await sink.start()
    await sink.stop()
    return [r.getMessage() for r in caplog.records if r.name.startswith("sinks.postgres")]


async def test_a_dsn_trusting_another_ca_is_refused_naming_its_sslrootcert(
    secured: SecuredServices, env: dict[str, str], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stranger = tmp_path / "stranger-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(stranger))
    wrong = tls_dsn(secured.postgres.password, secured.postgres.port, stranger)
    lines = await sink_start_up_lines(wrong, caplog)
    assert lines == [
        "postgres: cannot connect at start-up: Postgres certificate not trusted (unable to get "
        "local issuer certificate): check POSTGRES_DSN's sslrootcert (the CA bundle that "
        "signed the server's certificate); will keep trying"
    ]
    migrate = await asyncio.to_thread(cli, {**env, "POSTGRES_DSN": wrong}, "migrate")
    assert migrate.returncode == 1
    said = migrate.stderr.strip()
    assert said.startswith("spakinect-pipeline: cannot migrate: Postgres certificate not trusted")
    assert "check POSTGRES_DSN's sslrootcert" in said
    assert "Traceback" not in said
    for text in (caplog.text, migrate.stdout, migrate.stderr):
        assert secured.postgres.password not in text
    print("\n".join([*lines, said]))


async def test_a_plaintext_connection_is_refused_by_the_server(
    secured: SecuredServices, caplog: pytest.LogCaptureFixture
) -> None:
    plain = secured.postgres.dsn.split("?", 1)[0] + "?sslmode=disable"
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError) as refused:
        await asyncpg.connect(plain, timeout=10)
    assert str(refused.value).endswith("no encryption")  # the server's pg_hba.conf said no
    lines = await sink_start_up_lines(plain, caplog)
    assert lines == [
        "postgres: cannot connect at start-up: Postgres refused a connection without TLS "
        "(the server accepts TLS connections only): check POSTGRES_DSN's sslmode "
        "(verify-full, with sslrootcert); will keep trying"
    ]
    server_log = (secured.root / "logs" / "postgres-tls.log").read_text()
    assert "no pg_hba.conf entry" in server_log
    assert secured.postgres.password not in caplog.text
    print("\n".join([str(refused.value), *lines]))
