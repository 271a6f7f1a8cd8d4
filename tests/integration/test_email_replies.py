"""The email sink against a real SMTP server (aiosmtpd) that answers as relays do: 5xx for an
address goes to the DLQ, 4xx is retried until accepted, recipients come from EMAIL_TO and
EMAIL_TO_BY_LOCATION in env, and EMAIL_RATE_LIMIT_PER_MIN holds sending back."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from devstack.process import free_port
from events.envelope import Disposition, Envelope, Record
from events.messages import SourceMessage
from events.samples import sample_visit
from sinks.base import InvalidBatch
from sinks.email.notifier import EmailSink, sending_limiter
from sinks.email.settings import EmailSettings, SmtpSettings
from spakinect_pipeline.config import load_settings
from streams.delivery import Backoff, DeliveryStats, deliver

pytestmark = pytest.mark.integration
TRIES_BEFORE_ACCEPTING = 2  # `later@` answers 451 this many times, then 250


class Relay:
    """aiosmtpd handler: 550 for ``refuse@``, 451 for the first tries of ``later@``."""

    def __init__(self) -> None:
        self.tries: Counter[str] = Counter()
        self.delivered: list[list[str]] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        self.tries[address] += 1
        if address.startswith("refuse@"):
            return "550 5.1.1 mailbox unavailable"
        if address.startswith("later@") and self.tries[address] <= TRIES_BEFORE_ACCEPTING:
            return "451 4.3.0 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.delivered.append(list(envelope.rcpt_tos))
        return "250 OK"


@pytest.fixture
def relay() -> Iterator[tuple[Relay, int]]:
    handler, port = Relay(), free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


@pytest.fixture
def email_env(monkeypatch: pytest.MonkeyPatch) -> EmailSettings:
    monkeypatch.setenv("EMAIL_TO", "front@clinic.test, back@clinic.test")
    monkeypatch.setenv(
        "EMAIL_TO_BY_LOCATION",
        '{"loc_refuse": "refuse@clinic.test", "loc_later": ["later@clinic.test"],'
        ' "loc_two": ["a@clinic.test", "b@clinic.test"]}',
    )
    monkeypatch.setenv("EMAIL_RATE_LIMIT_PER_MIN", "2")
    return load_settings(EmailSettings)


def record(location_id: str) -> Record:
    gfe_id = f"gfe_smtp_{uuid.uuid4().hex[:6]}"
    envelope = Envelope(
        event_id=f"visit.completed:{gfe_id}:1714675200000",
        event="visit.completed",
        received_at=datetime.now(UTC),
        disposition=Disposition.APPLY,
        payload=sample_visit(gfe_id, location_id=location_id),
    )
    return Record(envelope, SourceMessage("visits", 0, 0, gfe_id.encode(), b"", []))


async def send(sink: EmailSink, location_id: str) -> tuple[list[type], DeliveryStats]:
    """Deliver one record as the email stage does; return what was dead-lettered."""
    dead: list[type] = []

    async def dead_letter(_record: Record, exc: BaseException, _attempts: int) -> None:
        dead.append(type(exc))

    stats = DeliveryStats()
    backoff = Backoff(initial=0.05, maximum=0.2)
    # A 5xx taken for retryable would retry for ever: the timeout says so.
    await asyncio.wait_for(deliver(sink, [record(location_id)], dead_letter, backoff, stats), 20)
    return dead, stats


def sink_for(port: int, email: EmailSettings, limit: bool = False) -> EmailSink:
    limiter = sending_limiter(
        email if limit else email.model_copy(update={"rate_limit_per_min": 1000})
    )
    return EmailSink("clinic", email, SmtpSettings(host="127.0.0.1", port=port), limiter)


async def test_a_refused_address_5xx_goes_to_the_dlq_at_once(
    relay: tuple[Relay, int], email_env: EmailSettings
) -> None:
    handler, port = relay
    dead, stats = await send(sink_for(port, email_env), "loc_refuse")
    assert dead == [InvalidBatch]
    assert handler.tries["refuse@clinic.test"] == 1  # not retried
    assert handler.delivered == []
    assert stats.retries == 0


async def test_a_4xx_is_retried_until_the_relay_accepts(
    relay: tuple[Relay, int], email_env: EmailSettings
) -> None:
    handler, port = relay
    dead, stats = await send(sink_for(port, email_env), "loc_later")
    assert dead == []
    assert stats.retries == TRIES_BEFORE_ACCEPTING
    assert handler.delivered == [["later@clinic.test"]]


async def test_recipients_come_from_email_to_and_email_to_by_location(
    relay: tuple[Relay, int], email_env: EmailSettings
) -> None:
    handler, port = relay
    sink = sink_for(port, email_env)
    assert (await send(sink, "loc_two"))[0] == []
    assert (await send(sink, "loc_elsewhere"))[0] == []  # no entry: EMAIL_TO
    assert handler.delivered == [
        ["a@clinic.test", "b@clinic.test"],
        ["front@clinic.test", "back@clinic.test"],
    ]


async def test_email_rate_limit_per_min_holds_sending_back(
    relay: tuple[Relay, int], email_env: EmailSettings
) -> None:
    handler, port = relay
    sink = sink_for(port, email_env, limit=True)  # EMAIL_RATE_LIMIT_PER_MIN=2
    for _ in range(2):
        await asyncio.wait_for(sink.write([record("loc_two")]), 10)
    third = asyncio.create_task(sink.write([record("loc_two")]))
    done, _ = await asyncio.wait({third}, timeout=3)  # the limit frees one slot in 30 s
    third.cancel()
    assert done == set()
    assert len(handler.delivered) == 2
