"""A single-node Apache Kafka 4.x broker in KRaft combined mode, run with ``java`` directly.

The jars come from Maven Central through the checked-in ``kafka/pom.xml`` and
are cached under ``.cache/``; storage is formatted once (``--standalone``) and
its cluster id kept, so a second start reuses the data.
"""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any, Self

from devstack import REPO
from devstack.process import ManagedProcess, ServiceError, ensure_dir, free_port, port_open

POM = Path(__file__).parent / "kafka" / "pom.xml"
LOG4J2 = Path(__file__).parent / "kafka" / "log4j2.properties"
KAFKA_VERSION = "4.1.1"


def new_cluster_id() -> str:
    """A Kafka cluster id (base64url UUID) that never starts with '-'.

    Kafka's own ``Uuid.randomUuid`` skips those too: the storage tool's
    argument parser would read ``-t -abc...`` as an option (1 start in 64).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


def ensure_jars(cache_dir: Path) -> Path:
    """Resolve the broker's jars with Maven into ``cache_dir``; return the libs folder."""
    libs = (cache_dir / f"kafka-{KAFKA_VERSION}" / "libs").resolve()
    marker = libs / ".complete"
    if marker.exists():
        return libs
    if shutil.which("mvn") is None:
        raise ServiceError("Maven (mvn) is needed to fetch the Kafka jars; install it first")
    print(
        f"fetching Apache Kafka {KAFKA_VERSION} jars from Maven Central into {libs} ...", flush=True
    )
    if libs.exists():
        shutil.rmtree(libs)
    # Interactive runs show Maven's per-artifact download lines as progress; CI keeps quiet.
    quiet = ["--no-transfer-progress", "-q"] if os.environ.get("CI") else []
    result = subprocess.run(
        [
            "mvn",
            "-B",
            *quiet,
            "-f",
            str(POM),
            "dependency:copy-dependencies",
            f"-DoutputDirectory={libs}",
            "-DincludeScope=runtime",
        ],
        stdout=subprocess.PIPE if quiet else sys.stdout,
        stderr=subprocess.STDOUT,
        check=False,
        text=True,
    )
    if result.returncode != 0:
        raise ServiceError(f"Maven could not resolve the Kafka jars:\n{result.stdout or ''}")
    jars = list(libs.glob("*.jar"))
    if not any(j.name.startswith("kafka_2.13-") for j in jars):
        raise ServiceError(f"no kafka_2.13 jar in {libs} after Maven ran")
    marker.write_text(f"{len(jars)} jars\n")
    print(f"Kafka jars ready ({len(jars)} jars)", flush=True)
    return libs


def broker_behaviour(partitions: int, replicas: int = 1) -> dict[str, str]:
    """How a broker the tests or ``make up`` run treats topics and groups, whoever starts it
    (the devstack, or testcontainers where Docker runs): a publish to an absent topic must
    fail as in production, never create the topic; internal topics fit ``replicas``."""
    min_isr = str(max(1, replicas - 1))
    return {
        "num.partitions": str(partitions),
        "auto.create.topics.enable": "false",
        "offsets.topic.replication.factor": str(replicas),
        "offsets.topic.num.partitions": "10",
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": min_isr,
        "share.coordinator.state.topic.replication.factor": str(replicas),
        "share.coordinator.state.topic.min.isr": min_isr,
        "default.replication.factor": str(replicas),
        "min.insync.replicas": min_isr,
        "group.initial.rebalance.delay.ms": "0",
        "log.flush.interval.messages": "9223372036854775807",
    }


def container_env(partitions: int) -> dict[str, str]:
    """:func:`broker_behaviour` as the ``KAFKA_*`` variables the Kafka images read."""
    return {
        "KAFKA_" + key.upper().replace(".", "_"): value
        for key, value in broker_behaviour(partitions).items()
    }


class KafkaBroker:
    """One KRaft broker+controller on 127.0.0.1, its data and logs in given folders."""

    def __init__(
        self,
        data_dir: Path,
        logs_dir: Path,
        cache_dir: Path,
        *,
        port: int = 9092,
        controller_port: int = 9093,
        partitions: int = 6,
        heap: str = "768m",
        node_id: int = 1,
        voters: dict[int, int] | None = None,
    ) -> None:
        """``voters`` (node id -> controller port) makes it one node of a static quorum."""
        self.node_id = node_id
        self.voters = voters
        self.data_dir = data_dir
        self.logs_dir = logs_dir
        self.cache_dir = cache_dir
        self.port = port
        self.controller_port = controller_port
        self.partitions = partitions
        self.heap = heap
        self.process: ManagedProcess | None = None
        # (address, port) of one more plain listener, on another network than 127.0.0.1
        # (chaos: the link to a network namespace); clients that bootstrap there stay there.
        self.link_listener: tuple[str, int] | None = None

    @classmethod
    def on_free_ports(cls, root: Path, **options: Any) -> Self:
        """A broker of its own under ``root`` (data, logs) on free ports, jars from the cache."""
        return cls(
            root / "kafka",
            root / "logs",
            REPO / ".cache",
            port=free_port(),
            controller_port=free_port(),
            **options,
        )

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _properties(self) -> Path:
        replicas = str(min(3, len(self.voters))) if self.voters else "1"
        quorum = (
            {
                "controller.quorum.voters": ",".join(
                    f"{node}@127.0.0.1:{port}" for node, port in sorted(self.voters.items())
                )
            }
            if self.voters
            else {"controller.quorum.bootstrap.servers": f"127.0.0.1:{self.controller_port}"}
        )
        plain = [f"PLAINTEXT://127.0.0.1:{self.port}"]
        if self.link_listener:
            plain.append("LINK://{}:{}".format(*self.link_listener))
        props = {
            "process.roles": "broker,controller",
            "node.id": str(self.node_id),
            **quorum,
            "listeners": ",".join([*plain, f"CONTROLLER://127.0.0.1:{self.controller_port}"]),
            "advertised.listeners": ",".join(plain),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT,LINK:PLAINTEXT"
            ),
            "log.dirs": str(self.data_dir / "log"),
            **broker_behaviour(self.partitions, int(replicas)),
        }
        path = self.data_dir / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def _java(self, libs: Path, main: str, *args: str, heap: str = "256m") -> list[str]:
        return [
            "java",
            f"-Xmx{heap}",
            "-Xms64m",
            "-XX:+UseG1GC",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={LOG4J2}",
            f"-Dkafka.logs.dir={self.logs_dir}",
            "-cp",
            f"{libs}/*",
            main,
            *args,
        ]

    def _format(self, libs: Path, props: Path) -> None:
        if (self.data_dir / "log" / "meta.properties").exists():
            return
        id_file = self.data_dir / "cluster.id"
        if not id_file.exists():
            id_file.write_text(new_cluster_id())
        cluster_id = id_file.read_text().strip()
        result = subprocess.run(
            self._java(
                libs,
                "kafka.tools.StorageTool",
                "format",
                *(() if self.voters else ("--standalone",)),
                "-t",
                cluster_id,
                "-c",
                str(props),
                "--ignore-formatted",
                *self._format_args(),
            ),
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            raise ServiceError(f"kafka storage format failed:\n{result.stdout}\n{result.stderr}")

    def _format_args(self) -> tuple[str, ...]:
        """More ``kafka-storage format`` arguments (a secured broker's SCRAM users)."""
        return ()

    def start(self, timeout: float = 90.0) -> None:
        self.launch()
        self.wait_ready(timeout)

    def launch(self, cluster_id: str | None = None) -> None:
        """Start the process without waiting (a quorum member needs its peers to be ready)."""
        libs = ensure_jars(self.cache_dir)
        ensure_dir(self.data_dir)
        ensure_dir(self.logs_dir)
        if cluster_id and not (self.data_dir / "cluster.id").exists():
            (self.data_dir / "cluster.id").write_text(cluster_id)
        props = self._properties()
        self._format(libs, props)
        name = f"kafka-{self.node_id}" if self.voters else "kafka"
        self.process = ManagedProcess(
            name,
            self._java(libs, "kafka.Kafka", str(props), heap=self.heap),
            self.logs_dir / f"{name}.out",
        )
        self.process.start()

    def wait_ready(self, timeout: float = 90.0) -> None:
        assert self.process is not None, "launch() first"
        self.process.wait_ready(
            lambda: port_open("127.0.0.1", self.port) and self._metadata_ok(),
            timeout,
            f"answering metadata on {self.bootstrap_servers} "
            f"(broker log: {self.logs_dir}/kafka.log)",
        )

    def _metadata_ok(self) -> bool:
        import asyncio

        from aiokafka.admin import AIOKafkaAdminClient

        async def probe() -> bool:
            admin = AIOKafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers, request_timeout_ms=3000
            )
            await admin.start()
            try:
                await admin.list_topics()
                return True
            finally:
                await admin.close()

        return asyncio.run(probe())

    def stop(self) -> None:
        if self.process:
            self.process.stop(grace=30)

    def kill(self) -> None:
        if self.process:
            self.process.kill()
