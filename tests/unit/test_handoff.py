"""The eager hand-off of fetched messages (streams.handoff) on a real, unstarted consumer."""

from __future__ import annotations

import asyncio
import inspect
import re
from pathlib import Path
from typing import Any

import pytest
from faust.transport.consumer import Consumer

from spakinect_pipeline.config import KafkaSettings
from streams.faust_app import create_faust_app
from streams.settings import StreamsSettings


def consumer(tmp_path: Path) -> Any:
    app = create_faust_app(
        "dedupe", StreamsSettings(store="memory", state_dir=tmp_path), KafkaSettings()
    )
    return app.consumer


def test_faust_still_hands_each_message_over_in_the_call_shape_we_speed_up() -> None:
    source = re.sub(r"\s+", " ", inspect.getsource(Consumer._drain_messages))
    assert "await self.wait_first( callback(message), self.suspend_flow.wait() )" in source


async def test_a_delivery_that_needs_no_wait_completes_without_tasks(tmp_path: Path) -> None:
    c = consumer(tmp_path)
    delivered: list[int] = []

    async def deliver(n: int) -> str:
        delivered.append(n)
        return "ok"

    tasks_before = len(asyncio.all_tasks())
    delivery = deliver(1)
    results = await c.wait_first(delivery, c.suspend_flow.wait())
    assert len(asyncio.all_tasks()) == tasks_before
    assert (results.done, results.results, results.stopped) == ([delivery], ["ok"], False)
    assert delivered == [1]


async def test_a_delivery_that_waits_finishes_through_faust_and_keeps_its_identity(
    tmp_path: Path,
) -> None:
    c = consumer(tmp_path)
    room = asyncio.Event()

    async def deliver() -> str:
        await room.wait()  # a full stream buffer
        return "put"

    delivery = deliver()
    waiting = asyncio.ensure_future(c.wait_first(delivery, c.suspend_flow.wait()))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    room.set()
    results = await asyncio.wait_for(waiting, 5)
    assert (results.done, results.results, results.stopped) == ([delivery], ["put"], False)


async def test_a_rebalance_stopping_the_flow_still_interrupts_a_waiting_delivery(
    tmp_path: Path,
) -> None:
    c = consumer(tmp_path)
    finished: list[bool] = []

    async def deliver() -> None:
        await asyncio.Event().wait()  # never gets room
        finished.append(True)

    waiting = asyncio.ensure_future(c.wait_first(deliver(), c.suspend_flow.wait()))
    await asyncio.sleep(0.01)
    c.stop_flow()  # what Faust does when a rebalance begins
    results = await asyncio.wait_for(waiting, 5)
    assert results.done  # the flow event
    await asyncio.sleep(0.01)
    assert finished == []  # the delivery was cancelled, as on Faust's own path


async def test_an_error_in_the_delivery_reaches_the_fetch_loop(tmp_path: Path) -> None:
    c = consumer(tmp_path)

    async def deliver() -> None:
        raise ValueError("broken channel")

    with pytest.raises(ValueError, match="broken channel"):
        await c.wait_first(deliver(), c.suspend_flow.wait())


async def test_only_the_fetch_loops_call_with_the_flow_running_is_delivered_eagerly(
    tmp_path: Path,
) -> None:
    c = consumer(tmp_path)

    async def deliver() -> None:
        return None

    running = (deliver(), c.suspend_flow.wait())
    assert c._is_handoff(running, None)
    assert not c._is_handoff(running, 5.0)  # a timeout: Faust's own path
    assert not c._is_handoff(running[:1], None)  # one awaitable (Service.wait)
    c.stop_flow()  # a rebalance: the delivery must race the flow event, as in Faust
    assert not c._is_handoff(running, None)
    for coro in running:
        coro.close()
