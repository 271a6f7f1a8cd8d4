from datetime import UTC, datetime

from events.envelope import Disposition, Envelope
from streams.dedupe_logic import Drop, ExpiryIndex, newest_entry, seen_entry, verdict


def env(ts: int = 1000, success: bool = True, gfe: str = "g1") -> Envelope:
    return Envelope(
        event_id=f"visit.completed:{gfe}:{ts}",
        event="visit.completed",
        received_at=datetime.now(UTC),
        payload={
            "event": "visit.completed",
            "timestamp": ts,
            "success": success,
            "data": {"gfe_id": gfe},
        },
    )


def test_first_event_applies():
    assert verdict(None, None, env()) is Disposition.APPLY


def test_same_event_again_is_dropped():
    first = env()
    assert isinstance(verdict(seen_entry(first, 0, 1), 1000, env()), Drop)


def test_success_is_never_dropped_because_of_an_earlier_failure():
    failed = env(success=False)
    assert verdict(None, None, failed) is Disposition.UNSUCCESSFUL
    assert verdict(seen_entry(failed, 0, 1), None, env()) is Disposition.APPLY
    assert isinstance(verdict(seen_entry(failed, 0, 1), None, failed), Drop)


def test_older_than_newest_is_stale_equal_or_newer_applies():
    assert verdict(None, 2000, env(ts=1000)) is Disposition.STALE
    assert verdict(None, 1000, env(ts=1000)) is Disposition.APPLY
    assert verdict(None, 1000, env(ts=3000)) is Disposition.APPLY


def test_failures_do_not_advance_the_newest_timestamp():
    assert newest_entry(env(success=False), 0, 1) is None
    assert newest_entry(env(ts=5), 2, 9) == {"ts": 5, "at": 9, "p": 2}


def test_expiry_index_pops_only_entries_outside_the_window_per_partition():
    index = ExpiryIndex(window_ms=100)
    index.add(0, 10, "seen", "a")
    index.add(0, 150, "seen", "b")
    index.add(1, 10, "seen", "c")
    assert index.expired(0, now_ms=200) == [(10, "seen", "a")]
    assert index.expired(0, now_ms=200) == []
    assert index.expired(1, now_ms=109) == []
    assert index.expired(1, now_ms=111) == [(10, "seen", "c")]
    assert len(index) == 1
