"""The whole local stack: services (Kafka, Postgres, SMTP catcher) and pipeline processes.

``make up`` runs it in the foreground on fixed ports under ``.data/``; the
integration tests run the services on free ports in a temporary folder.
``secured``: Kafka only over SASL_SSL/SCRAM and Postgres only over TLS, their
certificates from one local CA (``pki/``), as managed services are.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devstack.kafka import KafkaBroker
from devstack.phi_keys import local_phi_env
from devstack.postgres import LocalPostgres
from devstack.process import ManagedProcess, ensure_dir, free_port, port_open
from devstack.secure_kafka import SecuredKafkaBroker
from devstack.tls_postgres import TlsPostgres

if TYPE_CHECKING:
    from spakinect_pipeline.config import KafkaSettings


@dataclass
class Ports:
    kafka: int = 9092
    kafka_controller: int = 9093
    postgres: int = 5432
    smtp: int = 1025
    ingress: int = 8000
    web_base: int = 6066
    console: int = 8100

    @classmethod
    def free(cls) -> Ports:
        return cls(
            kafka=free_port(),
            kafka_controller=free_port(),
            postgres=free_port(),
            smtp=free_port(),
            ingress=free_port(),
            web_base=0,
            console=free_port(),
        )


@dataclass
class LocalServices:
    """Kafka, Postgres and the SMTP catcher with their data and logs under ``root``."""

    root: Path
    cache: Path
    ports: Ports = field(default_factory=Ports)
    secured: bool = False

    def __post_init__(self) -> None:
        self.logs = ensure_dir(self.root / "logs")
        self.mail_dir = ensure_dir(self.root / "mail")
        self.phi_env, self.phi_keys_created = local_phi_env(self.root)
        self.kafka: KafkaBroker
        self.postgres: LocalPostgres | TlsPostgres
        port, controller_port = self.ports.kafka, self.ports.kafka_controller
        if self.secured:  # their own data: users, passwords and certificates differ
            pki = self.root / "pki"
            self.kafka = SecuredKafkaBroker(
                self.root / "kafka-secured",
                self.logs,
                self.cache,
                pki_dir=pki,
                port=port,
                controller_port=controller_port,
            )
            self.postgres = TlsPostgres(
                self.root / "postgres-tls", self.logs, pki_dir=pki, port=self.ports.postgres
            )
        else:
            self.kafka = KafkaBroker(
                self.root / "kafka",
                self.logs,
                self.cache,
                port=port,
                controller_port=controller_port,
            )
            self.postgres = LocalPostgres(
                self.root / "postgres", self.logs, port=self.ports.postgres
            )
        self.smtp = ManagedProcess(
            "smtp-catcher",
            [
                sys.executable,
                "-m",
                "devstack.smtp_catcher",
                "--port",
                str(self.ports.smtp),
                "--mail-dir",
                str(self.mail_dir),
            ],
            self.logs / "smtp.log",
        )

    def start(self, kafka: bool = True) -> None:
        """Start the services (``kafka=False``: the caller brings its own, e.g. a cluster)."""
        started: list[str] = []
        try:
            self.smtp.start()
            self.smtp.wait_ready(
                lambda: port_open("127.0.0.1", self.ports.smtp),
                20,
                f"listening on 127.0.0.1:{self.ports.smtp}",
            )
            started.append("smtp")
            self.postgres.start()
            started.append("postgres")
            if kafka:
                self.kafka.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self.kafka.stop()
        self.postgres.stop()
        self.smtp.stop()

    def env(self) -> dict[str, str]:
        """What a client needs (the same names the pipeline's settings read), keys included."""
        kafka = (
            self.kafka.client_env()
            if isinstance(self.kafka, SecuredKafkaBroker)
            else {"KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers}
        )
        return {
            **kafka,
            "POSTGRES_DSN": self.postgres.dsn,
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": str(self.ports.smtp),
            "MAIL_DIR": str(self.mail_dir.resolve()),
            **self.phi_env,
        }


def stage_argv(stage: str) -> list[str]:
    """The ``spakinect-pipeline`` arguments that run ``stage`` (the ingress or a worker)."""
    return ["ingress"] if stage == "ingress" else ["worker", stage]


def pipeline_process(name: str, argv: list[str], env: dict[str, str], logs: Path) -> ManagedProcess:
    """A ``spakinect-pipeline`` subcommand as a child process, logging to ``logs/<name>.log``."""
    return ManagedProcess(
        name,
        [sys.executable, "-m", "cli.main", *argv],
        logs / f"{name}.log",
        env={**os.environ, **env},
    )


def http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - our own URL
            return bool(response.status == 200)
    except OSError:
        return False


def prepare_pipeline(env: dict[str, str]) -> None:
    """Create the topics and apply the migrations, with the stack's env."""
    from sinks.postgres.migrate import migrate
    from spakinect_pipeline.phi.key_store import ensure_key_topic
    from spakinect_pipeline.topic_admin import ensure_topics

    asyncio.run(ensure_topics(kafka_settings(env)))
    asyncio.run(ensure_key_topic(kafka_settings(env)))
    asyncio.run(migrate(env["POSTGRES_DSN"]))


def kafka_settings(env: dict[str, str]) -> KafkaSettings:
    """The ``KAFKA_*`` values of ``env`` (security included) as the pipeline reads them."""
    from spakinect_pipeline.config import KafkaSettings

    fields = KafkaSettings.model_fields
    values: dict[str, Any] = {
        name: value
        for key, value in env.items()
        if key.startswith("KAFKA_") and (name := key.removeprefix("KAFKA_").lower()) in fields
    }
    return KafkaSettings(**values)


def stack_env(env: dict[str, str], phi_env: dict[str, str], ingress_url: str) -> dict[str, str]:
    """What ``stack.env`` holds: a client's settings (secured ones too), never the PHI keys."""
    return {**{k: v for k, v in env.items() if k not in phi_env}, "INGRESS_URL": ingress_url}


def shown_dsn(dsn: str) -> str:
    """``dsn`` with its password masked, for a banner or a log."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    if parts.password is None:
        return dsn
    netloc = f"{parts.username}:****@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def kafka_security(env: dict[str, str]) -> str:
    """How the banner describes the stack's Kafka security (no password)."""
    if env.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT") == "PLAINTEXT":
        return "plaintext"
    return (
        f"{env['KAFKA_SECURITY_PROTOCOL']}, {env.get('KAFKA_SASL_MECHANISM')} user "
        f"{env.get('KAFKA_SASL_USERNAME')}, CA {env.get('KAFKA_SSL_CAFILE')}; password in stack.env"
    )


def wait_http(process: ManagedProcess, url: str, timeout: float = 60) -> None:
    process.wait_ready(lambda: http_ok(url), timeout, f"answering 200 on {url}")


def elapsed(since: float) -> str:
    return f"{time.monotonic() - since:.1f}s"
