"""Three KRaft nodes on 127.0.0.1 (each broker and controller): replication 3, min ISR 2.

Used by ``make chaos`` to kill partition leaders and to take two of three
brokers down; the single node of :mod:`devstack.kafka` serves everything else.
"""

from __future__ import annotations

from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

from devstack.kafka import KafkaBroker, new_cluster_id
from devstack.process import free_port


class KafkaCluster:
    def __init__(self, root: Path, logs: Path, cache: Path, size: int = 3) -> None:
        controller_ports = {node: free_port() for node in range(1, size + 1)}
        self.cluster_id = new_cluster_id()
        self.brokers = {
            node: KafkaBroker(
                root / f"kafka-{node}",
                logs / f"kafka-{node}",
                cache,
                port=free_port(),
                controller_port=controller_ports[node],
                partitions=3,
                heap="512m",
                node_id=node,
                voters=controller_ports,
            )
            for node in controller_ports
        }

    @property
    def bootstrap_servers(self) -> str:
        return ",".join(broker.bootstrap_servers for broker in self.brokers.values())

    def start(self, timeout: float = 120.0) -> None:
        """Launch every node, then wait: no node answers before the quorum has a leader."""
        for broker in self.brokers.values():
            broker.launch(self.cluster_id)
        for broker in self.brokers.values():
            broker.wait_ready(timeout)

    def kill(self, node: int) -> None:
        self.brokers[node].kill()

    def launch(self, node: int) -> None:
        self.brokers[node].launch(self.cluster_id)

    def restart(self, node: int, timeout: float = 120.0) -> None:
        self.brokers[node].start(timeout)

    def stop(self) -> None:
        for broker in self.brokers.values():
            broker.stop()

    async def busiest_partition(self, topic: str) -> int:
        """The partition of ``topic`` holding the most messages."""
        from aiokafka import AIOKafkaConsumer, TopicPartition

        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap_servers)
        await consumer.start()
        try:
            partitions = consumer.partitions_for_topic(topic) or {0}
            ends = await consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
            return int(max(ends, key=lambda tp: ends[tp]).partition)
        finally:
            await consumer.stop()

    async def leader(self, topic: str, partition: int) -> int:
        """The node id leading ``topic``/``partition`` (-1 while none does)."""
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap_servers)
        await admin.start()
        try:
            (description,) = await admin.describe_topics([topic])
            for entry in description["partitions"]:  # key names vary with the protocol version
                if entry.get("partition_index", entry.get("partition")) == partition:
                    return int(entry.get("leader_id", entry.get("leader", -1)))
            return -1
        finally:
            await admin.close()
