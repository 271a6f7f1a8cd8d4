"""Pure parts of the local stack and the benchmark tools."""

from __future__ import annotations

import base64
from pathlib import Path

from devstack.kafka import KafkaBroker, broker_behaviour, container_env, new_cluster_id


def test_cluster_ids_never_start_with_a_dash_and_decode_to_16_bytes() -> None:
    ids = [new_cluster_id() for _ in range(5000)]  # P(no dash start by luck) ~ 1e-34
    assert not [i for i in ids if i.startswith("-")]
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
    assert len(set(ids)) == len(ids)


def test_the_container_broker_is_configured_like_the_devstack_broker(tmp_path: Path) -> None:
    """Where Docker runs, tests get a testcontainers broker: it must refuse absent topics
    (no auto-creation) like the devstack's, or tests of that path would diverge."""
    broker = KafkaBroker(tmp_path / "data", tmp_path / "logs", tmp_path, partitions=6)
    broker.data_dir.mkdir()
    lines = broker._properties().read_text().splitlines()
    properties = dict(line.split("=", 1) for line in lines)
    env = container_env(partitions=6)
    assert properties["auto.create.topics.enable"] == "false"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    for key, value in broker_behaviour(6).items():
        assert properties[key] == value
        assert env["KAFKA_" + key.upper().replace(".", "_")] == value
