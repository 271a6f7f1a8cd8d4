"""The real stack as separate processes, each of which a scenario can kill and restart."""

from __future__ import annotations

import asyncio
import json
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from chaos.answers import ingress_answer_seconds
from chaos.faults import StalledServer, signal_tree
from chaos.netns import Partition
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
PUBLISH_BUDGET_S = 5.0  # INGRESS_PUBLISH_TIMEOUT_S: the documented default (docs/contract.md)


class ChaosStack:
    """Kafka, Postgres, SMTP catcher, ingress and one worker per stage under ``root``."""

    def __init__(
        self, root: Path, cache: Path, brokers: int = 1, partition: Partition | None = None
    ) -> None:
        """``brokers=3``: a KRaft cluster (replication 3, min ISR 2) instead of one node.
        ``partition``: the ingress in that (created) namespace, reaching Kafka over its link."""
        ports = Ports.free()
        self.services = LocalServices(root, cache, ports)
        self.cluster = KafkaCluster(root, root / "logs", cache) if brokers == 3 else None
        self.root = root
        self.partition = partition
        ingress_ip = partition.ingress_ip if partition else "127.0.0.1"
        self.ingress_url = f"http://{ingress_ip}:{ports.ingress}"
        # INFO: the ingress's access log, how long each answer took (chaos.answers).
        self.ingress_env = {"LOG_LEVEL": "INFO", "INGRESS_HOST": ingress_ip}
        if partition:
            link = (partition.kafka_ip, free_port())
            self.services.kafka.link_listener = link
            self.ingress_env["KAFKA_BOOTSTRAP_SERVERS"] = "{}:{}".format(*link)
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
        self.web_ports: dict[str, int] = {}
        self.restarts: list[str] = []  # what the harness had to start again, as an operator would
        self.stalled_smtp = StalledServer()

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
        self.web_ports[name] = free_port()
        env = {
            **self.env,
            "STREAMS_STATE_DIR": str(self.root / "state" / name),
            "STREAMS_WEB_PORT": str(self.web_ports[name]),
        }
        if name == "ingress":
            env |= self.ingress_env
        process = pipeline_process(name, stage_argv(name), env, self.services.logs)
        if name == "ingress" and self.partition:
            process.argv = self.partition.wrap(process.argv)
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

    def _service(self, name: str) -> ManagedProcess | None:
        if name == "kafka":
            return self.services.kafka.process
        if name == "postgres":
            return self.services.postgres.process
        return self.processes.get(name)

    def pause(self, name: str, resume: bool = False) -> None:
        """SIGSTOP a service and its children (sockets stay open, nothing answers);
        ``resume``: SIGCONT them."""
        process = self._service(name)
        if process is not None and process.pid is not None and process.alive():
            signal_tree(process.pid, signal.SIGCONT if resume else signal.SIGSTOP)

    async def stall_smtp(self) -> None:
        """Swap the SMTP catcher for a server on its port that accepts and never answers."""
        self.services.smtp.kill()
        await self.stalled_smtp.start(self.services.ports.smtp)

    async def unstall_smtp(self) -> None:
        await self.stalled_smtp.stop()
        await asyncio.to_thread(self.services.smtp.start)

    def readyz(self, name: str) -> tuple[int, dict[str, Any]]:
        """Status and body of a pipeline process's ``/readyz`` (-1: no answer within 3 s)."""
        base = self.ingress_url if name == "ingress" else f"http://127.0.0.1:{self.web_ports[name]}"
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=3) as response:  # noqa: S310
                return int(response.status), json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read() or b"{}")
        except (OSError, ValueError):
            return -1, {}

    def rebalances(self) -> dict[str, int]:
        """Rebalances each worker has started so far (its ``/readyz`` says)."""
        return {stage: int(self.readyz(stage)[1].get("rebalances", 0)) for stage in STAGE_NAMES}

    async def revive(self, name: str) -> None:
        """Start ``name`` again if it died (what an operator or the kubelet would do);
        counted in :attr:`restarts`."""
        process = self._service(name)
        if process is not None and not process.alive():
            self.restarts.append(name)
            await self.restart(name)

    async def supervise(self) -> None:
        """Restart any pipeline process that exits, as the kubelet would, and count it."""
        while True:
            for name in list(self.processes):
                await self.revive(name)
            await asyncio.sleep(1)

    def stop(self) -> None:
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes.values():
            process.stop(grace=20)
        if self.cluster:
            self.cluster.stop()
        self.services.stop()
