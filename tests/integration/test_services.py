"""The services themselves answer: Kafka round trip, Postgres read/write, SMTP catcher."""

from __future__ import annotations

import asyncio
import uuid
from email.message import EmailMessage

import aiosmtplib
import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from devstack.smtp_catcher import read_mails
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.topic_admin import ensure_topics
from tests.helpers import read_topic, wait_until
from tests.services import Services

pytestmark = pytest.mark.integration


async def test_kafka_produce_and_consume(services: Services) -> None:
    topic = f"roundtrip-{uuid.uuid4().hex[:8]}"
    kafka = KafkaSettings(bootstrap_servers=[services.kafka_bootstrap])
    assert await ensure_topics(kafka, [topic], {}) == [topic]
    assert await ensure_topics(kafka, [topic], {}) == []  # idempotent
    producer = AIOKafkaProducer(
        bootstrap_servers=services.kafka_bootstrap, acks="all", enable_idempotence=True
    )
    await producer.start()
    try:
        await producer.send_and_wait(topic, b"hello", key=b"k")
    finally:
        await producer.stop()
    (message,) = await read_topic(services.kafka_bootstrap, topic)
    assert (message.key, message.value) == (b"k", b"hello")


async def test_postgres_write_and_read(services: Services) -> None:
    conn = await asyncpg.connect(services.postgres_dsn)
    try:
        table = f"t_{uuid.uuid4().hex[:8]}"
        await conn.execute(f"CREATE TEMP TABLE {table} (v text)")
        await conn.execute(f"INSERT INTO {table} VALUES ($1)", "written")
        assert await conn.fetchval(f"SELECT v FROM {table}") == "written"
    finally:
        await conn.close()


async def test_smtp_catcher_saves_each_message(services: Services) -> None:
    assert services.mail_dir is not None
    to = f"{uuid.uuid4().hex[:8]}@example.test"
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = "a@example.test", to, "hello"
    message.set_content("body")
    await aiosmtplib.send(message, hostname=services.smtp_host, port=services.smtp_port)
    (saved,) = await wait_until(
        lambda: asyncio.sleep(0, read_mails(services.mail_dir, to)), 10, "the saved .eml"
    )
    assert saved["Subject"] == "hello"
