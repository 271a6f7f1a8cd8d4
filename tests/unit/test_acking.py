import asyncio

import pytest

from streams.acking import PumpFailed, next_batch


async def test_next_batch_takes_what_is_there_up_to_max():
    queue: asyncio.Queue[int] = asyncio.Queue()
    for i in range(5):
        queue.put_nowait(i)
    assert await next_batch(queue, 3, within=1) == [0, 1, 2]
    assert await next_batch(queue, 3, within=0.05) == [3, 4]


async def test_next_batch_waits_for_the_first_item_then_at_most_within():
    queue: asyncio.Queue[int] = asyncio.Queue()
    asyncio.get_running_loop().call_later(0.05, queue.put_nowait, 7)
    assert await next_batch(queue, 10, within=0.05) == [7]


async def test_a_dead_pump_fails_the_batch_loop():
    queue: asyncio.Queue[object] = asyncio.Queue()
    queue.put_nowait(PumpFailed("stream failed"))
    with pytest.raises(PumpFailed):
        await next_batch(queue, 10, within=0.05)
