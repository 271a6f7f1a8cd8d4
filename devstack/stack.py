"""The whole local stack: services (Kafka, Postgres, SMTP catcher) and pipeline processes.

``make up`` runs it in the foreground on fixed ports under ``.data/``; the
integration tests run the services on free ports in a temporary folder.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from devstack.kafka import KafkaBroker
from devstack.phi_keys import local_phi_env
from devstack.postgres import LocalPostgres
from devstack.process import ManagedProcess, ensure_dir, free_port, port_open


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

    def __post_init__(self) -> None:
        self.logs = ensure_dir(self.root / "logs")
        self.mail_dir = ensure_dir(self.root / "mail")
        self.phi_env, self.phi_keys_created = local_phi_env(self.root)
        self.kafka = KafkaBroker(
            self.root / "kafka",
            self.logs,
            self.cache,
            port=self.ports.kafka,
            controller_port=self.ports.kafka_controller,
        )
        self.postgres = LocalPostgres(self.root / "postgres", self.logs, port=self.ports.postgres)
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
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.kafka.bootstrap_servers,
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
    from spakinect_pipeline.config import KafkaSettings
    from spakinect_pipeline.topic_admin import ensure_topics

    kafka = KafkaSettings(
        bootstrap_servers=env["KAFKA_BOOTSTRAP_SERVERS"].split(","),
        replication_factor=int(env.get("KAFKA_REPLICATION_FACTOR", "1")),
        min_insync_replicas=int(env.get("KAFKA_MIN_INSYNC_REPLICAS", "1")),
    )
    asyncio.run(ensure_topics(kafka))
    asyncio.run(migrate(env["POSTGRES_DSN"]))


def wait_http(process: ManagedProcess, url: str, timeout: float = 60) -> None:
    process.wait_ready(lambda: http_ok(url), timeout, f"answering 200 on {url}")


def elapsed(since: float) -> str:
    return f"{time.monotonic() - since:.1f}s"
