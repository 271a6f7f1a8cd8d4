"""The batch wait follows the arrival rate: none at quiet hours, the whole wait when busy."""

import pytest

from spakinect_pipeline.rate_wait import RateWait


def feed(wait: RateWait, per_s: float, seconds: float, start: float = 0.0) -> float:
    """Batches of one event at ``per_s`` for ``seconds``; the time it ends."""
    now, step = start, 1 / per_s
    while now < start + seconds:
        wait.took(1, now)
        now += step
    return now


def test_a_lone_event_is_taken_at_once():
    wait = RateWait(within_s=0.05)
    assert wait.wait_s(0.0) == 0.0
    wait.took(1, 0.0)
    assert wait.wait_s(0.001) == 0.0


def test_quiet_hours_never_wait():
    wait = RateWait(within_s=0.05)
    end = feed(wait, per_s=10, seconds=10)
    assert wait.rate(end) == pytest.approx(10, rel=0.3)
    assert wait.wait_s(end) == 0.0  # 10/s brings half an event in 50 ms


def test_busy_hours_wait_the_whole_window_and_stop_when_the_rate_falls():
    wait = RateWait(within_s=0.05)
    end = feed(wait, per_s=500, seconds=5)
    assert wait.rate(end) == pytest.approx(500, rel=0.1)
    assert wait.wait_s(end) == 0.05
    assert wait.wait_s(end + 10) == 0.0  # ten quiet seconds later: take at once again


def test_a_batch_of_many_counts_as_many():
    wait = RateWait(within_s=0.05)
    for second in range(5):
        wait.took(200, float(second))
    assert wait.wait_s(4.0) == 0.05


def test_no_window_never_waits():
    wait = RateWait(within_s=0.0)
    feed(wait, per_s=1000, seconds=2)
    assert wait.wait_s(2.0) == 0.0


def test_fill_caps_the_wait_at_the_time_the_rate_takes_to_bring_that_many():
    wait = RateWait(within_s=0.005, fill=8)
    end = feed(wait, per_s=500, seconds=5)
    assert wait.wait_s(end) == 0.005  # 500/s brings 2.5 in 5 ms: the whole window
    wait = RateWait(within_s=0.005, fill=8)
    end = feed(wait, per_s=4000, seconds=5)
    assert wait.wait_s(end) == pytest.approx(8 / 4000, rel=0.1)  # 2 ms brings 8
    assert wait.wait_s(end + 10) == 0.0  # and quiet hours still go at once
