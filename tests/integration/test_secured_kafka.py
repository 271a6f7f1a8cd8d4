"""The pipeline on a Kafka reachable only over SASL_SSL with SCRAM and a private CA.

The broker is devstack's, secured like a managed cluster (devstack.secure_kafka):
topics and a dedupe worker work end to end; a wrong password answers 503 within
the budget and logs "authentication failed"; a wrong CA is refused, clearly;
no password reaches a log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from devstack.secure_kafka import SecuredKafkaBroker
from events.registry import VISIT_COMPLETED
from events.samples import SAMPLES
from events.topics import Topics
from ingress.app import create_app
from ingress.settings import IngressSettings
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.kafka_problems import KafkaRefused
from spakinect_pipeline.topic_reader import read_whole_topic

pytestmark = pytest.mark.integration
WRONG_PASSWORD = "Wr0ng-pa55word-for-test"
BUDGET_S = 2.0


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafkaBroker]:
    root = tmp_path_factory.mktemp("secured")
    kafka = SecuredKafkaBroker.on_free_ports(root, pki_dir=root / "pki", partitions=2)
    kafka.start()
    yield kafka
    kafka.stop()


@pytest.fixture(scope="module")
async def kafka(broker: SecuredKafkaBroker) -> KafkaSettings:
    from cli.main import create_all_topics
    from streams.settings import StreamsSettings

    settings = broker.client_settings(topic_prefix=f"s{uuid.uuid4().hex[:6]}.", partitions=2)
    await create_all_topics(settings, StreamsSettings(app_id=f"{settings.topic_prefix}app"))
    return settings


async def first_message(kafka: KafkaSettings, topic: str, timeout: float) -> Any:
    """The topic's first record, read over SASL_SSL like any client of the pipeline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        async with contextlib.aclosing(read_whole_topic(kafka, topic, idle_s=2)) as records:
            async for record in records:
                return record
    raise AssertionError(f"nothing on {topic} within {timeout:g}s")


@contextlib.asynccontextmanager
async def ingress(kafka: KafkaSettings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(IngressSettings(allow_unauthenticated=True, publish_timeout_s=BUDGET_S), kafka)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://ingress") as client:
            yield client


async def test_a_visit_goes_through_ingress_and_a_dedupe_worker_over_sasl_ssl(
    kafka: KafkaSettings, broker: SecuredKafkaBroker, tmp_path: Path
) -> None:
    async with ingress(kafka) as client:
        answer = await client.post("/webhooks/visit-completed", json=SAMPLES["visit.completed"])
    assert answer.status_code == 200, answer.text

    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KAFKA_", "STREAMS_"))},
        **broker.client_env(),
        "KAFKA_TOPIC_PREFIX": kafka.topic_prefix,
        "KAFKA_PARTITIONS": "2",
        "STREAMS_APP_ID": f"{kafka.topic_prefix}app",
        "STREAMS_STATE_DIR": str(tmp_path / "state"),
        "STREAMS_WEB_PORT": "0",
    }
    log_file = tmp_path / "worker.log"
    with log_file.open("w") as out:
        worker = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "cli.main",
            "worker",
            "dedupe",
            env=env,
            stdout=out,
            stderr=asyncio.subprocess.STDOUT,
            cwd=tmp_path,
        )
    try:
        clean = await first_message(
            kafka, Topics(kafka.topic_prefix).clean(VISIT_COMPLETED), timeout=90
        )
    finally:
        worker.terminate()
        await asyncio.wait_for(worker.wait(), timeout=60)
    assert clean.key == b"gfe_abc123xyz789"
    assert broker.app_password not in log_file.read_text()


async def test_a_wrong_password_is_a_503_within_the_budget_saying_authentication_failed(
    kafka: KafkaSettings, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = KafkaSettings(**{**kafka.model_dump(), "sasl_password": WRONG_PASSWORD})
    with caplog.at_level(logging.INFO):
        async with ingress(wrong) as client:
            started = time.monotonic()
            answer = await client.post("/webhooks/visit-completed", json=SAMPLES["visit.completed"])
            took = time.monotonic() - started
    assert answer.status_code == 503
    assert took < BUDGET_S + 1
    ours = [r.getMessage() for r in caplog.records if r.name.startswith(("spakinect", "ingress"))]
    start_up = [m for m in ours if m.startswith("cannot connect at start-up")]
    failed = [m for m in ours if m.startswith("publish failed")]
    assert start_up, ours
    assert failed, ours
    for line in [*start_up, *failed]:
        assert "Kafka authentication failed" in line
        assert "check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD" in line
        assert "KafkaConnectionError" not in line
    assert WRONG_PASSWORD not in caplog.text
    print("\n".join([start_up[0], failed[0]]))


async def test_a_wrong_ca_is_refused_naming_the_ca_setting(
    kafka: KafkaSettings, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from streams.faust_app import prepare_changelogs
    from streams.worker import build_stage

    stranger = tmp_path / "stranger-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(stranger))
    wrong = KafkaSettings(**{**kafka.model_dump(), "ssl_cafile": str(stranger)})
    os.environ.update({"STREAMS_STORE": "memory", "STREAMS_STATE_DIR": str(tmp_path)})
    try:
        app = build_stage("dedupe")
    finally:
        for name in ("STREAMS_STORE", "STREAMS_STATE_DIR"):
            os.environ.pop(name)
    with caplog.at_level(logging.INFO), pytest.raises(KafkaRefused) as info:
        await prepare_changelogs(app, wrong, 60, timeout=30)
    assert str(info.value).startswith("Kafka certificate not trusted")
    assert "check KAFKA_SSL_CAFILE" in str(info.value)
    assert kafka.sasl_password is not None
    assert kafka.sasl_password.get_secret_value() not in caplog.text
    print(str(info.value))
