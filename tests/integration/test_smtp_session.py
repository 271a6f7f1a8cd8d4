"""The kept-open SMTP session against a real SMTP server (aiosmtpd): one connection for many
emails, a fresh one after the relay hung up, after a refusal and after ``max_messages``."""

from __future__ import annotations

from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import aiosmtplib
import pytest
from aiosmtpd.controller import Controller

from devstack.process import free_port
from sinks.email.settings import SmtpSettings
from sinks.email.smtp_session import SmtpSession

pytestmark = pytest.mark.integration


class Counting:
    """aiosmtpd handler: counts sessions (EHLOs) and delivered messages; 550 for refuse@."""

    def __init__(self) -> None:
        self.sessions = 0
        self.delivered: list[str] = []

    async def handle_EHLO(
        self, server: Any, session: Any, envelope: Any, hostname: str, responses: list[str]
    ) -> list[str]:
        self.sessions += 1
        session.host_name = hostname
        return responses

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address.startswith("refuse@"):
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.delivered.append(envelope.rcpt_tos[0])
        return "250 OK"


@pytest.fixture
def relay() -> Iterator[tuple[Counting, Controller]]:
    handler = Counting()
    controller = Controller(handler, hostname="127.0.0.1", port=free_port())
    controller.start()
    try:
        yield handler, controller
    finally:
        controller.stop()


def message(n: int) -> EmailMessage:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "gfe@pipeline.test", "front@clinic.test", f"#{n}"
    msg.set_content("a visit completed")
    return msg


def session_for(controller: Controller, **options: Any) -> SmtpSession:
    return SmtpSession(SmtpSettings(host="127.0.0.1", port=controller.port), **options)


async def test_many_emails_share_one_session_and_stop_quits_it(
    relay: tuple[Counting, Controller],
) -> None:
    handler, controller = relay
    session = session_for(controller)
    for n in range(5):
        await session.send(message(n), ["front@clinic.test"])
    assert (handler.sessions, len(handler.delivered), session.connections) == (1, 5, 1)
    await session.close()
    await session.send(message(5), ["front@clinic.test"])  # a closed session reopens
    assert (handler.sessions, len(handler.delivered)) == (2, 6)
    await session.close()


async def test_a_session_the_relay_hung_up_is_replaced_not_failed() -> None:
    handler = Counting()
    first = Controller(handler, hostname="127.0.0.1", port=free_port())
    first.start()
    session = session_for(first)
    await session.send(message(1), ["front@clinic.test"])
    first.stop()  # the relay restarts: every open connection is closed
    restarted = Controller(handler, hostname="127.0.0.1", port=first.port)
    restarted.start()
    try:
        await session.send(message(2), ["front@clinic.test"])
        assert len(handler.delivered) == 2
        assert session.connections == 2
        await session.close()
    finally:
        restarted.stop()


async def test_a_refusal_drops_the_session_and_the_next_email_goes_out(
    relay: tuple[Counting, Controller],
) -> None:
    handler, controller = relay
    session = session_for(controller)
    await session.send(message(1), ["front@clinic.test"])
    with pytest.raises(aiosmtplib.SMTPRecipientsRefused):
        await session.send(message(2), ["refuse@clinic.test"])
    await session.send(message(3), ["front@clinic.test"])
    assert handler.delivered == ["front@clinic.test", "front@clinic.test"]
    assert session.connections == 2  # never reused after an error
    await session.close()


async def test_sessions_are_capped_in_messages_and_idle_time(
    relay: tuple[Counting, Controller],
) -> None:
    handler, controller = relay
    capped = session_for(controller, max_messages=2)
    for n in range(5):
        await capped.send(message(n), ["front@clinic.test"])
    assert capped.connections == 3  # 2 + 2 + 1
    await capped.close()
    idle = session_for(controller, idle_s=0.0)  # every gap counts as idle
    await idle.send(message(6), ["front@clinic.test"])
    await idle.send(message(7), ["front@clinic.test"])
    assert idle.connections == 2
    await idle.close()
    assert len(handler.delivered) == 7
