"""The real stack as separate processes, each of which a scenario can kill and restart."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from chaos.answers import ingress_answer_seconds
from devstack.kafka_cluster import KafkaCluster
from devstack.process import ManagedProcess, free_port
from devstack.stack import (
    LocalServices,
    Ports,
    pipeline_process,
    prepare_pipeline,
    stage_argv,
    wait_http,
)
from streams.stages import STAGE_NAMES

CLINIC = "clinic@chaos.test"
PUBLISH_BUDGET_S = 5.0  # INGRESS_PUBLISH_TIMEOUT_S: DESIGN's default, what operators run


class ChaosStack:
    """Kafka, Postgres, SMTP catcher, ingress and one worker per stage under ``root``."""

    def __init__(self, root: Path, cache: Path, brokers: int = 1) -> None:
        """``brokers=3``: a KRaft cluster (replication 3, min ISR 2) instead of one node."""
        ports = Ports.free()
        self.services = LocalServices(root, cache, ports)
        self.cluster = KafkaCluster(root, root / "logs", cache) if brokers == 3 else None
        self.root = root
        self.ingress_url = f"http://127.0.0.1:{ports.ingress}"
        self.env = {
            **self.services.env(),
            "INGRESS_ALLOW_UNAUTHENTICATED": "true",
            "INGRESS_PORT": str(ports.ingress),
            "INGRESS_PUBLISH_TIMEOUT_S": str(PUBLISH_BUDGET_S),
            "EMAIL_TO": CLINIC,
            "EMAIL_FROM": "gfe@chaos.test",
            "STREAMS_RETRY_MAX_BACKOFF_S": "2",
            "EMAIL_RATE_LIMIT_PER_MIN": "100000",  # counts, not the clinic's mail limits
            "LOG_LEVEL": "WARNING",
            "LOG_FORMAT": "json",
        }
        if self.cluster:
            self.env |= {
                "KAFKA_BOOTSTRAP_SERVERS": self.cluster.bootstrap_servers,
                "KAFKA_REPLICATION_FACTOR": "3",
                "KAFKA_MIN_INSYNC_REPLICAS": "2",
            }
        self.processes: dict[str, ManagedProcess] = {}

    @property
    def dsn(self) -> str:
        return self.services.postgres.dsn

    def ingress_answer_seconds(self) -> list[float]:
        """The ingress's own time per webhook answer, from every run of it (restarts append)."""
        with open(self.services.logs / "ingress.log", errors="replace") as log:
            return ingress_answer_seconds(log)

    def start(self) -> None:
        self.services.start(kafka=self.cluster is None)
        if self.cluster:
            self.cluster.start()
        prepare_pipeline(self.env)
        self._spawn("ingress")
        for stage in STAGE_NAMES:
            self._spawn(stage)
        wait_http(self.processes["ingress"], f"{self.ingress_url}/readyz")

    def _spawn(self, name: str) -> None:
        env = {
            **self.env,
            "STREAMS_STATE_DIR": str(self.root / "state" / name),
            "STREAMS_WEB_PORT": str(free_port()),
        }
        if name == "ingress":
            env["LOG_LEVEL"] = "INFO"  # its access log: how long each answer took (chaos.answers)
        process = pipeline_process(name, stage_argv(name), env, self.services.logs)
        process.start()
        self.processes[name] = process

    async def kill(self, name: str) -> None:
        """SIGKILL a pipeline process or a service (kafka, postgres, smtp)."""
        if name == "kafka":
            self.services.kafka.kill()
        elif name == "postgres":
            self.services.postgres.kill()
        elif name == "smtp":
            self.services.smtp.kill()
        else:
            self.processes[name].kill()

    async def restart(self, name: str) -> None:
        if name == "kafka":
            await asyncio.to_thread(self.services.kafka.start)
        elif name == "postgres":
            await asyncio.to_thread(self.services.postgres.start)
        elif name == "smtp":
            await asyncio.to_thread(self.services.smtp.start)
        else:
            self._spawn(name)
            if name == "ingress":
                await asyncio.to_thread(
                    wait_http, self.processes["ingress"], f"{self.ingress_url}/readyz"
                )

    def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            process.stop(grace=20)
        if self.cluster:
            self.cluster.stop()
        self.services.stop()
