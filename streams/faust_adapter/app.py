"""The stage's Faust app: the strict consumer, the partition fence, and a stop that drains.

Faust's stop revokes the tables and stops the fetcher first, then tells the
app it is shutting down, then cancels the agents: a batch in flight (an
email the relay is accepting) is cut off and repeated by the next owner.
:meth:`PipelineApp.on_stop` first runs every registered drain (the runner's:
take no new batch, let the one in flight finish within ``drain_bound_s``,
commit), then Faust's own stop.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.sensors import Monitor, Sensor
from faust.transport.drivers import aiokafka as faust_aiokafka

from streams.faust_adapter.consumer import StrictConsumer
from streams.fence import Fence
from streams.fetch_shape import FetchShape

log = logging.getLogger(__name__)
Drain = Callable[[float], Awaitable[None]]


class QuietMonitor(Monitor):
    """Faust's monitor without its per-message bookkeeping.

    Faust's default sensor counts and times every message and event for its own
    ``/stats`` page, which our workers do not serve (their figures are
    :mod:`streams.metrics`). The per-message hooks are the base sensor's no-ops,
    except the one stamp Faust's consumer reads: when a stream last took an event
    from each partition (its "Stream has not started processing" check). The rest
    (commits, rebalances, the offsets Faust tracks) stays.
    """

    on_message_in = Sensor.on_message_in
    on_stream_event_out = Sensor.on_stream_event_out
    on_message_out = Sensor.on_message_out
    on_table_get = Sensor.on_table_get
    on_table_set = Sensor.on_table_set
    on_table_del = Sensor.on_table_del

    def on_stream_event_in(self, tp: Any, offset: int, stream: Any, event: Any) -> None:
        self.stream_inbound_time[tp] = time.monotonic()


class StrictTransport(faust_aiokafka.Transport):
    Consumer = StrictConsumer


class PipelineApp(faust.App):
    """A Faust app whose consumer is :class:`StrictConsumer`, fetching as ``fetch`` says."""

    fetch = FetchShape()  # fixed, or where the adaptive shape starts
    fetch_adapt_wait_s = 0.0  # > 0: fetches gather this long's worth at high rates
    drain_bound_s = 10.0  # how long a revoke or a stop waits for a batch in flight

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fence = Fence()
        self._drains: list[Drain] = []

    def on_drain(self, drain: Drain) -> None:
        """Run ``drain(bound_s)`` when the app stops, before Faust's own stop."""
        self._drains.append(drain)

    async def on_stop(self) -> None:
        for drain in self._drains:
            try:
                await drain(self.drain_bound_s)
            except Exception:  # the stop goes on; the next owner repeats
                log.exception("drain at stop failed")
        await super().on_stop()

    def _new_transport(self) -> StrictTransport:
        return StrictTransport(self.conf.broker_consumer, self)
