"""An SMTP catcher: a real SMTP server (aiosmtpd) that saves each message as an ``.eml``.

Run as ``python -m devstack.smtp_catcher --port 1025 --mail-dir .data/mail``.
Files are named ``<UTC time>-<uuid>.eml`` and written atomically (temp file,
then rename), so a reader never sees half a message.
"""

from __future__ import annotations

import argparse
import asyncio
import email
import email.policy
import os
import signal
import uuid
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


def read_mails(mail_dir: Path, to: str) -> list[EmailMessage]:
    """The messages saved in ``mail_dir`` for recipient ``to`` (tests, chaos runs)."""
    found = []
    for path in sorted(mail_dir.glob("*.eml")):
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        if to in str(message.get("X-Envelope-To", "")):
            found.append(message)
    return found


class SaveToFolder:
    """aiosmtpd handler: every accepted message becomes one file in ``mail_dir``."""

    def __init__(self, mail_dir: Path) -> None:
        self.mail_dir = mail_dir
        mail_dir.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
        name = f"{stamp}-{uuid.uuid4().hex[:12]}.eml"
        tmp = self.mail_dir / f".{name}.tmp"
        header = (
            f"X-Envelope-From: {envelope.mail_from}\r\n"
            f"X-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        ).encode()
        tmp.write_bytes(header + envelope.original_content)
        os.replace(tmp, self.mail_dir / name)
        return "250 Message accepted for delivery"


def start(host: str, port: int, mail_dir: Path) -> Controller:
    """Start the catcher on its own thread; the caller stops it with ``.stop()``."""
    controller = Controller(SaveToFolder(mail_dir), hostname=host, port=port)
    controller.start()
    return controller


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--mail-dir", type=Path, default=Path(".data/mail"))
    args = parser.parse_args()
    controller = start(args.host, args.port, args.mail_dir)
    print(f"SMTP catcher on {args.host}:{args.port}, saving to {args.mail_dir}", flush=True)

    async def wait_for_signal() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()

    try:
        asyncio.run(wait_for_signal())
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
