"""The email sink: sends one kind of email (clinic or patient) per applied visit.

SMTP unreachable, timeouts and 4xx answers are retryable (the runner backs
off and tries again, never drops); a 5xx that refuses the recipients is
invalid for that record (to the DLQ). Sending is rate-limited so a replay
cannot flood the relay.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import aiosmtplib
from aiolimiter import AsyncLimiter

from events.envelope import Record
from sinks.base import InvalidBatch, RetryableError
from sinks.email.render import make_environment, render
from sinks.email.settings import EmailSettings, SmtpSettings
from sinks.email.smtp_session import SmtpSession

log = logging.getLogger(__name__)


def classify(exc: Exception) -> RetryableError | InvalidBatch:
    """By SMTP reply code: 5xx refusing recipients is invalid, everything else retryable."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        if codes and all(500 <= code < 600 for code in codes):
            return InvalidBatch(f"recipients refused (SMTP {codes[0]})")
        return RetryableError(f"recipients refused (SMTP {codes[0] if codes else '?'})")
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return RetryableError(f"SMTP authentication failed ({exc.code})")
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        if 500 <= exc.code < 600 and isinstance(
            exc, aiosmtplib.SMTPSenderRefused | aiosmtplib.SMTPDataError
        ):
            return InvalidBatch(f"message refused (SMTP {exc.code})")
        return RetryableError(f"SMTP {exc.code}")
    return RetryableError(type(exc).__name__)


def sending_limiter(email: EmailSettings) -> AsyncLimiter:
    """``EMAIL_RATE_LIMIT_PER_MIN`` sends a minute, shared by every kind, so a replay of a
    day's visits cannot flood the relay."""
    return AsyncLimiter(email.rate_limit_per_min, 60)


class EmailSink:
    """Sends the ``kind`` email of each record in a batch, one at a time, over one session."""

    def __init__(
        self, kind: str, email: EmailSettings, smtp: SmtpSettings, limiter: AsyncLimiter
    ) -> None:
        self.kind = kind
        self.name = "email"
        self.email = email
        self.smtp = smtp
        self.limiter = limiter
        self.env = make_environment(email.template_dir)
        self.session = SmtpSession(smtp)
        self.sent = 0

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self.session.close()

    async def write(self, batch: Sequence[Record]) -> None:
        for record in batch:
            try:
                outgoing = render(record.envelope, self.kind, self.email, self.env)
            except Exception as exc:  # noqa: BLE001 - any template error: this record is invalid
                raise InvalidBatch(
                    f"cannot render the {self.kind} email ({type(exc).__name__})"
                ) from None
            if outgoing is None:
                continue
            async with self.limiter:
                try:
                    await self.session.send(outgoing.message, outgoing.recipients)
                except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                    raise classify(exc) from None
            self.sent += 1
            log.info(
                "email sent",
                extra={
                    "event_id": record.envelope.event_id,
                    "kind": self.kind,
                    "recipients": len(outgoing.recipients),
                },
            )
