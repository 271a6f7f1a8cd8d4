"""What a chaos run counts at the end: rows stored per event id, emails sent per visit."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import asyncpg

from chaos.stack import CLINIC
from devstack.smtp_catcher import read_mails


async def rows(dsn: str, prefix: str) -> tuple[set[str], int]:
    """The event ids stored under ``prefix``, and how many rows repeat one."""
    conn = await asyncpg.connect(dsn, timeout=5)  # a hung server must not hang the count
    try:
        found = await conn.fetch(
            "SELECT entity_id FROM spakinect_events WHERE entity_id LIKE $1",
            prefix + "%",
            timeout=10,
        )
    finally:
        await conn.close()
    ids = [r["entity_id"] for r in found]
    return set(ids), len(ids) - len(set(ids))


def emails(mail_dir: Path, prefix: str) -> Counter[str]:
    """Emails the clinic got per visit id under ``prefix`` (the id is in the subject)."""
    sent: Counter[str] = Counter()
    for message in read_mails(mail_dir, CLINIC):
        for word in str(message.get("Subject", "")).split():
            if word.startswith(prefix):
                sent[word] += 1
    return sent


async def stored(dsn: str, prefix: str) -> set[str]:
    """The stored ids, or none while Postgres cannot answer (killed, stopped, full)."""
    try:
        return (await rows(dsn, prefix))[0]
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
        return set()


async def drained(dsn: str, prefix: str, acked: set[str], deadline: float) -> float:
    """When every acknowledged event had its row (or the deadline), as ``time.monotonic()``."""
    while True:
        if acked <= await stored(dsn, prefix) or time.monotonic() > deadline:
            return time.monotonic()
        await asyncio.sleep(1)
