"""One SMTP session kept open across emails, instead of a connection per email.

A session per email (connect, EHLO, STARTTLS, AUTH, MAIL, RCPT, DATA, QUIT)
cost the email stage and the relay more than everything else the pipeline
does per visit at live rates (docs/benchmarks.md). The session is reused
while it is healthy and recent; it is dropped, never repaired, after any
error (the next email opens a fresh one, so a half-finished transaction can
never leak into the next), after ``max_messages`` emails (relays cap them per
connection) and when it has been idle ``idle_s`` (relays close idle sessions,
and a closed one is noticed before it is used).

Reuse adds no new way to send an email twice: an email whose DATA was sent
when the connection broke is as ambiguous as it was with a connection of its
own, and the stage handles it the same way (a retryable error: sent again).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Sequence
from email.message import EmailMessage

import aiosmtplib

from sinks.email.settings import SmtpSettings


class SmtpSession:
    """Sends messages over one kept-open SMTP connection, reconnecting when needed."""

    def __init__(
        self, smtp: SmtpSettings, *, max_messages: int = 100, idle_s: float = 30.0
    ) -> None:
        self.smtp = smtp
        self.max_messages = max_messages
        self.idle_s = idle_s
        self.connections = 0  # opened so far (tests and the bench read it)
        self._client: aiosmtplib.SMTP | None = None
        self._sent_here = 0
        self._last_used = 0.0

    async def send(self, message: EmailMessage, recipients: Sequence[str]) -> None:
        """Send one message; any error drops the session and is raised as it came.

        A reused session the relay hung up on (its EOF not read yet) is retried once on
        a fresh one: the stage would retry that error anyway, this only skips the backoff.
        """
        reused = self._client is not None
        try:
            await self._send_once(message, recipients)
        except (aiosmtplib.SMTPServerDisconnected, ConnectionError):
            if not reused:
                raise
            await self._send_once(message, recipients)

    async def _send_once(self, message: EmailMessage, recipients: Sequence[str]) -> None:
        client = await self._session()
        try:
            await client.send_message(message, recipients=list(recipients))
        except BaseException:
            self._drop()
            raise
        self._sent_here += 1
        self._last_used = time.monotonic()
        if self._sent_here >= self.max_messages:
            await self.close()

    async def close(self) -> None:
        """End the session politely (QUIT); errors are ignored, it is going anyway."""
        client, self._client = self._client, None
        if client is not None and client.is_connected:
            with contextlib.suppress(aiosmtplib.SMTPException, OSError, TimeoutError):
                await client.quit()
        if client is not None:
            client.close()

    async def _session(self) -> aiosmtplib.SMTP:
        client = self._client
        stale = time.monotonic() - self._last_used > self.idle_s
        if client is not None and (not client.is_connected or stale):
            await self.close()
            client = None
        if client is None:
            smtp = self.smtp
            client = aiosmtplib.SMTP(
                hostname=smtp.host,
                port=smtp.port,
                username=smtp.username,
                password=smtp.password.get_secret_value() if smtp.password else None,
                start_tls=smtp.starttls,
                use_tls=False,
                timeout=smtp.timeout_s,
            )
            await client.connect()
            self._client, self._sent_here = client, 0
            self._last_used = time.monotonic()
            self.connections += 1
        return client

    def _drop(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            client.close()
