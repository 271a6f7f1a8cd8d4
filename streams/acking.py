"""Manual acks: an event is acked only after its work is done, never on cancellation.

Faust acks the current event in a ``finally`` when the consuming loop is
closed (and ``take()``/``take_events()`` ack their whole buffer the same way),
so a worker stopped mid-retry would commit an offset it never processed.
Stages here switch Faust's auto-ack off and call :func:`ack` themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any


async def unacked_events(stream: Any) -> AsyncIterator[Any]:
    """Iterate a Faust stream's events without acking them."""
    stream.enable_acks = False
    async for event in stream.events():
        yield event


async def ack(stream: Any, *events: Any) -> None:
    for event in events:
        await stream.ack(event)


class PumpFailed(Exception):
    """The task feeding the queue died; the agent must fail too, so Faust restarts it."""


def _checked(item: Any) -> Any:
    if isinstance(item, PumpFailed):
        raise item
    return item


async def next_batch(queue: asyncio.Queue[Any], max_items: int, within: float) -> list[Any]:
    """Wait for one item, then gather more until ``max_items`` or ``within`` seconds pass."""
    batch = [_checked(await queue.get())]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while len(batch) < max_items:
        if not queue.empty():
            batch.append(_checked(queue.get_nowait()))
            continue
        remaining = deadline - loop.time()
        if remaining <= 0:
            break
        try:
            batch.append(_checked(await asyncio.wait_for(queue.get(), remaining)))
        except TimeoutError:
            break
    return batch


@contextlib.asynccontextmanager
async def pumped(stream: Any, maxsize: int) -> AsyncIterator[asyncio.Queue[Any]]:
    """Feed a stream's unacked events into a bounded queue from a background task.

    The bound is backpressure: while a batch is being written, at most
    ``maxsize`` further events wait in memory.
    """
    queue: asyncio.Queue[Any] = asyncio.Queue(maxsize=maxsize)

    async def pump() -> None:
        try:
            async for event in unacked_events(stream):
                await queue.put(event)
        except Exception as exc:  # noqa: BLE001 - handed to the consumer of the queue
            await queue.put(PumpFailed(f"stream failed: {type(exc).__name__}"))

    task = asyncio.create_task(pump())
    try:
        yield queue
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
