from streams.behind import TimeBehind

TP = ("spakinect.visits", 0)


def test_nothing_waiting_is_zero_seconds_behind():
    behind = TimeBehind()
    behind.delivered(TP, 5, timestamp=100.0)
    assert behind.seconds(TP, lag=0, committed=6, now=500.0) == 0.0


def test_the_oldest_uncommitted_message_sets_the_age():
    behind = TimeBehind()
    for offset, ts in ((5, 100.0), (6, 110.0), (7, 150.0)):
        behind.delivered(TP, offset, ts)
    assert behind.seconds(TP, lag=3, committed=5, now=160.0) == 60.0
    behind.committed(TP, 7)
    assert behind.seconds(TP, lag=1, committed=7, now=160.0) == 10.0
    assert len(behind) == 1


def test_the_committed_offset_passed_at_scrape_time_prunes_too():
    behind = TimeBehind()
    behind.delivered(TP, 1, 10.0)
    behind.delivered(TP, 2, 20.0)
    assert behind.seconds(TP, lag=1, committed=2, now=30.0) == 10.0


def test_repeats_after_a_seek_are_noted_once_and_a_reread_hole_goes_in_order():
    behind = TimeBehind()
    behind.delivered(TP, 10, 100.0)
    behind.delivered(TP, 12, 120.0)
    behind.delivered(TP, 10, 999.0)  # the same message again
    behind.delivered(TP, 11, 110.0)  # the skipped one, read again
    behind.delivered(TP, 9, 90.0)
    assert len(behind) == 4
    assert behind.seconds(TP, lag=4, committed=9, now=100.0) == 10.0
    behind.committed(TP, 11)
    assert behind.seconds(TP, lag=2, committed=11, now=130.0) == 20.0


def test_waiting_messages_not_handed_over_yet_age_from_when_first_seen():
    behind = TimeBehind()
    assert behind.seconds(TP, lag=4, committed=0, now=1000.0) == 0.0
    assert behind.seconds(TP, lag=4, committed=0, now=1030.0) == 30.0
    behind.delivered(TP, 0, 1020.0)
    assert behind.seconds(TP, lag=4, committed=0, now=1040.0) == 20.0
    assert behind.seconds(TP, lag=0, committed=4, now=1050.0) == 0.0
    assert behind.seconds(TP, lag=1, committed=4, now=1060.0) == 0.0  # a fresh wait


def test_partitions_no_longer_assigned_are_forgotten():
    behind = TimeBehind()
    other = ("spakinect.visits", 1)
    behind.delivered(TP, 0, 1.0)
    behind.delivered(other, 0, 1.0)
    behind.seconds(other, lag=1, committed=None, now=2.0)
    behind.keep_only({TP})
    assert len(behind) == 1
    assert behind.seconds(other, lag=1, committed=None, now=5.0) == 0.0
