"""Commits never pass an unacked offset; lasting holes are reported for a re-read."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from streams.offsets import Committable, HoleWatch, committable


def test_contiguous_run_from_the_floor_commits_past_its_end() -> None:
    assert committable([12, 10, 11], floor=10) == Committable(13, 3, None)


def test_a_one_offset_hole_blocks_the_commit() -> None:
    # Faust 0.15 let exactly this through (min(acked) - committed > 1 was its test).
    assert committable([7, 8, 9], floor=6) == Committable(None, 0, 6)


def test_the_run_stops_at_the_first_gap() -> None:
    acked = [5, 6, 9, 10]
    assert committable(acked, floor=5) == Committable(7, 2, None)


def test_without_a_known_floor_the_first_run_commits() -> None:
    assert committable([3, 4], floor=None) == Committable(5, 2, None)
    assert committable([], floor=0) == Committable(None, 0, None)


@given(st.sets(st.integers(0, 60), max_size=40), st.integers(0, 30))
def test_a_commit_covers_exactly_the_acked_run_from_the_floor(acked: set[int], floor: int) -> None:
    acked = {o for o in acked if o >= floor}
    result = committable(sorted(acked, reverse=True), floor)
    run = 0
    while floor + run in acked:
        run += 1
    if run:  # never past an unacked offset, and never short of one the run covers
        assert result == Committable(floor + run, run, None)
    else:
        assert result.offset is None
        assert result.hole == (floor if acked else None)


def test_a_hole_is_due_after_the_grace_period_and_then_once_per_period() -> None:
    watch = HoleWatch(grace_s=10)
    watch.observe("p0", 6, now=100)
    watch.observe("p0", 6, now=105)  # still the same hole: the clock keeps running
    assert watch.due(now=109) == []
    assert watch.due(now=110) == [("p0", 6)]
    assert watch.due(now=115) == []
    assert watch.due(now=120) == [("p0", 6)]


def test_a_filled_or_moved_hole_starts_over() -> None:
    watch = HoleWatch(grace_s=10)
    watch.observe("p0", 6, now=100)
    watch.observe("p0", None, now=101)
    assert watch.due(now=200) == []
    watch.observe("p1", 3, now=100)
    watch.observe("p1", 8, now=108)
    assert watch.due(now=112) == []
    watch.forget("p1")
    assert watch.due(now=500) == []
