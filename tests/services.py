"""One fixture layer for real services: named by env, else testcontainers, else the devstack.

* ``KAFKA_BOOTSTRAP_SERVERS``, ``POSTGRES_DSN``, ``SMTP_HOST``/``SMTP_PORT`` (+ ``MAIL_DIR``
  to read what the SMTP server received) name running services;
* else, where a Docker engine answers, testcontainers start Kafka and Postgres;
* else the devstack starts real local ones on free ports for this test session.

Under ``CI=true`` an unavailable service fails the run instead of skipping tests.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from devstack import REPO


@dataclass(frozen=True)
class Services:
    kafka_bootstrap: str
    postgres_dsn: str  # a database the tests may create other databases from
    smtp_host: str
    smtp_port: int
    mail_dir: Path | None
    origin: str


def unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"integration services unavailable under CI: {reason}", pytrace=False)
    pytest.skip(f"integration services unavailable: {reason}")


def _docker_answers() -> bool:
    try:
        import docker

        client = docker.from_env(timeout=3)
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - any failure means "no engine"
        return False


@contextlib.contextmanager
def _from_env() -> Iterator[Services]:
    mail_dir = os.environ.get("MAIL_DIR")
    yield Services(
        kafka_bootstrap=os.environ["KAFKA_BOOTSTRAP_SERVERS"],
        postgres_dsn=os.environ["POSTGRES_DSN"],
        smtp_host=os.environ.get("SMTP_HOST", "127.0.0.1"),
        smtp_port=int(os.environ.get("SMTP_PORT", "1025")),
        mail_dir=Path(mail_dir) if mail_dir else None,
        origin="env",
    )


@contextlib.contextmanager
def _from_testcontainers(tmp: Path) -> Iterator[Services]:
    from testcontainers.kafka import KafkaContainer
    from testcontainers.postgres import PostgresContainer

    from devstack import smtp_catcher
    from devstack.kafka import container_env
    from devstack.process import free_port

    mail_dir = tmp / "mail"
    port = free_port()
    smtp = smtp_catcher.start("127.0.0.1", port, mail_dir)
    kafka_container = KafkaContainer("apache/kafka:4.1.1").with_kraft()
    for name, value in container_env(partitions=6).items():  # configured like the devstack's
        kafka_container.with_env(name, value)
    with (
        kafka_container as kafka,
        PostgresContainer("postgres:18.1", driver=None) as pg,
    ):
        try:
            yield Services(
                kafka.get_bootstrap_server(),
                pg.get_connection_url(),
                "127.0.0.1",
                port,
                mail_dir,
                "testcontainers",
            )
        finally:
            smtp.stop()


@contextlib.contextmanager
def _from_devstack(tmp: Path) -> Iterator[Services]:
    from devstack.stack import LocalServices, Ports

    services = LocalServices(tmp, REPO / ".cache", Ports.free())
    services.start()
    try:
        env = services.env()
        yield Services(
            env["KAFKA_BOOTSTRAP_SERVERS"],
            env["POSTGRES_DSN"],
            "127.0.0.1",
            services.ports.smtp,
            services.mail_dir,
            "devstack",
        )
    finally:
        services.stop()


@contextlib.contextmanager
def real_services() -> Iterator[Services]:
    if os.environ.get("KAFKA_BOOTSTRAP_SERVERS") and os.environ.get("POSTGRES_DSN"):
        with _from_env() as services:
            yield services
        return
    with tempfile.TemporaryDirectory(prefix="spakinect-test-") as tmp:
        try:
            manager = (
                _from_testcontainers(Path(tmp)) if _docker_answers() else _from_devstack(Path(tmp))
            )
            services = manager.__enter__()
        except Exception as exc:
            unavailable(f"{type(exc).__name__}: {exc}")
            raise
        try:
            yield services
        finally:
            manager.__exit__(None, None, None)
