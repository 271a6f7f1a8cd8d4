"""A client that behaves like Spakinect: every delivery is retried until it gets a 2xx."""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import httpx

from events.samples import sample_visit

ANSWER_TIMEOUT_S = 10.0  # the vendor's own limit


@dataclass
class VendorLog:
    """Every answer the vendor got, and which events it saw acknowledged."""

    statuses: list[int] = field(default_factory=list)  # -1: no answer (refused, timeout)
    seconds: list[float] = field(default_factory=list)
    timeline: list[tuple[float, float, int]] = field(default_factory=list)  # sent, answered, status
    acked: set[str] = field(default_factory=set)
    deliveries: int = 0


class Vendor:
    def __init__(self, url: str, concurrency: int = 32) -> None:
        self.url = url
        self.log = VendorLog()
        self._slots = asyncio.Semaphore(concurrency)

    async def deliver(self, client: httpx.AsyncClient, gfe_id: str) -> None:
        """One delivery: retried with capped, jittered backoff until a 2xx."""
        body = sample_visit(gfe_id)
        backoff = 0.2
        async with self._slots:
            self.log.deliveries += 1
            while True:
                started = time.monotonic()
                try:
                    response = await client.post(self.url, json=body, timeout=ANSWER_TIMEOUT_S)
                    status = response.status_code
                except httpx.HTTPError:
                    status = -1
                answered = time.monotonic()
                self.log.statuses.append(status)
                self.log.seconds.append(answered - started)
                self.log.timeline.append((started, answered, status))
                if 200 <= status < 300:
                    self.log.acked.add(gfe_id)
                    return
                await asyncio.sleep(backoff * random.uniform(0.5, 1.5))
                backoff = min(backoff * 2, 5.0)

    async def run(self, gfe_ids: list[str], rate: float, duplicate_share: float = 0.2) -> None:
        """Deliver every event (a share of them twice, on purpose) at ``rate`` per second."""
        deliveries = gfe_ids + random.sample(gfe_ids, int(len(gfe_ids) * duplicate_share))
        random.shuffle(deliveries)
        async with httpx.AsyncClient() as client:
            tasks = []
            for gfe_id in deliveries:
                tasks.append(asyncio.create_task(self.deliver(client, gfe_id)))
                await asyncio.sleep(1 / rate)
            await asyncio.gather(*tasks)


def deliver_all(url: str, gfe_ids: list[str], rate: float) -> VendorLog:
    """Run :meth:`Vendor.run` in this process, with a loop of its own; return what it saw."""
    vendor = Vendor(url)
    asyncio.run(vendor.run(gfe_ids, rate))
    return vendor.log
