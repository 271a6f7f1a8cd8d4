"""Faust's per-message hand-off from the fetcher to the streams, without four tasks a message.

Faust's fetch loop (``Consumer._drain_messages``) hands every fetched message
to its stream with ``await self.wait_first(callback(message),
self.suspend_flow.wait())``: the delivery races a rebalance's "stop the flow",
so a delivery stuck on a full stream buffer cannot hold a rebalance up. Each
call makes four tasks (the delivery, the flow event, the service's stopped and
crashed events) and an ``asyncio.wait``: 7 % of a dedupe worker's CPU in a
profile, for a delivery that almost always completes without waiting (a lock
nobody holds, a put into a buffer with room).

:class:`EagerHandoff` runs the delivery's first step at once when the flow is
running and the service neither stopped nor crashed. If it completes there,
that is the result ``wait_first`` would have returned; if it has to wait, the
rest of it goes through Faust's ``wait_first`` unchanged, racing the flow
event as before. ``tests/unit/test_handoff.py`` pins the call in Faust's loop
this relies on.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from typing import Any

from mode.services import WaitResults


class Resumed:
    """An awaitable for the rest of ``coro``, which has already yielded ``pending``
    (what ``await`` would have yielded to the event loop)."""

    def __init__(self, coro: Coroutine[Any, Any, Any], pending: Any) -> None:
        self.coro = coro
        self.pending = pending

    def __await__(self) -> Generator[Any, Any, Any]:
        return _resume(self.coro, self.pending)


def _resume(coro: Coroutine[Any, Any, Any], pending: Any) -> Generator[Any, Any, Any]:
    """What ``yield from coro`` does, from where ``coro`` stands: sends and throws pass."""
    while True:
        try:
            value = yield pending
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # noqa: BLE001 - passed into the coroutine, as await does
            try:
                pending = coro.throw(exc)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                pending = coro.send(value)
            except StopIteration as stop:
                return stop.value


class EagerHandoff:
    """``wait_first`` for Faust's consumer that delivers at once when nothing can race it.

    Mixed into the consumer (a mode ``Service``); only the fetch loop's call shape
    (a delivery coroutine and the flow event's ``wait()``) takes the fast path.
    """

    suspend_flow: Any
    _stopped: Any
    _crashed: Any

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        parent: Any = super()
        if not self._is_handoff(coros, timeout):
            return await parent.wait_first(*coros, timeout=timeout)  # type: ignore[no-any-return]
        delivery, flow = coros
        try:
            pending = delivery.send(None)
        except StopIteration as stop:
            flow.close()  # the flow event's wait() was never started
            return WaitResults([delivery], [stop.value], False)
        except BaseException:
            flow.close()
            raise
        rest = Resumed(delivery, pending)
        results: WaitResults = await parent.wait_first(rest, flow, timeout=timeout)
        # Callers compare what is done with what they passed: give back the delivery itself.
        done = [delivery if d is rest else d for d in results.done]
        return WaitResults(done, results.results, results.stopped)

    def _is_handoff(self, coros: tuple[Any, ...], timeout: Any) -> bool:
        return (
            timeout is None
            and len(coros) == 2
            and isinstance(coros[0], Coroutine)
            and isinstance(coros[1], Coroutine)
            and not self.suspend_flow.is_set()
            and not self._stopped.is_set()
            and not self._crashed.is_set()
        )
