"""The adaptive fetch shape (streams.fetch_shape): batch at high rates, never at quiet ones."""

import inspect

from streams.fetch_shape import IDLE_WAIT_MS, AdaptiveFetch, FetchShape

EVENT_BYTES = 1500


def feed(fetch: AdaptiveFetch, per_s: int, seconds: float, start: float) -> float:
    """``per_s`` events a second for ``seconds``, ticking as the consumer does; the end time."""
    now = start
    step = 0.01
    for _ in range(int(seconds / step)):
        for _ in range(int(per_s * step)):
            fetch.delivered(EVENT_BYTES)
        now += step
        fetch.tick(now)
    return now


def test_a_quiet_stage_fetches_each_event_at_once_and_waits_long_when_idle():
    fetch = AdaptiveFetch(wait_s=0.01)
    feed(fetch, per_s=10, seconds=3, start=0)
    assert fetch.shape == FetchShape(1, IDLE_WAIT_MS)


def test_a_busy_stage_gathers_about_wait_s_worth_per_fetch():
    fetch = AdaptiveFetch(wait_s=0.01)
    feed(fetch, per_s=500, seconds=3, start=0)
    assert fetch.shape.max_wait_ms == 10
    assert 4 * EVENT_BYTES <= fetch.shape.min_bytes <= 6 * EVENT_BYTES  # ~5 events a fetch


def test_when_traffic_stops_the_next_tick_goes_back_to_immediate():
    fetch = AdaptiveFetch(wait_s=0.01)
    end = feed(fetch, per_s=500, seconds=2, start=0)
    assert fetch.shape.min_bytes > 1
    assert fetch.tick(end + 1.0) == FetchShape()  # the idle tick (each commit, 1 s)


def test_zero_wait_never_batches():
    fetch = AdaptiveFetch(wait_s=0)
    feed(fetch, per_s=5000, seconds=1, start=0)
    assert fetch.shape == FetchShape()


def test_aiokafka_reads_the_fetch_shape_per_request():
    """The adapter sets the fetcher's attributes between requests: pinned here."""
    from aiokafka.consumer.fetcher import Fetcher

    source = inspect.getsource(Fetcher._get_actions_per_node)
    assert "self._fetch_max_wait_ms,\n                self._fetch_min_bytes," in source
