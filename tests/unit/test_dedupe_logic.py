from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from events.envelope import Disposition, Envelope
from streams.dedupe_logic import (
    Drop,
    ExpiryIndex,
    newest_entry,
    plan_batch,
    seen_entry,
    verdict,
)


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


def test_expiry_index_skips_an_entry_rewritten_inside_the_window():
    index = ExpiryIndex(window_ms=100)
    index.add(0, 10, "newest", "gfe_1")
    index.add(0, 90, "newest", "gfe_1")  # the same key written again later
    assert len(index) == 1
    assert index.expired(0, now_ms=150) == []  # its first write is outside, the entry is not
    assert index.expired(0, now_ms=191) == [(90, "newest", "gfe_1")]
    assert len(index) == 0


def test_a_batch_catches_duplicates_and_older_events_among_its_own_events():
    batch = [env(ts=2000), env(ts=2000), env(ts=1000), env(ts=9, success=False), env(ts=9)]
    decisions = plan_batch(batch, lambda _: None, lambda _: None)
    assert decisions[0] is Disposition.APPLY
    assert isinstance(decisions[1], Drop)
    assert decisions[2] is Disposition.STALE
    assert decisions[3] is Disposition.UNSUCCESSFUL
    assert decisions[4] is Disposition.STALE  # the failure did not drop it; 2000 is newer


def test_a_batch_reads_the_tables_for_what_earlier_batches_recorded():
    recorded = env(ts=5000, gfe="g2")
    decisions = plan_batch(
        [env(ts=5000, gfe="g2"), env(ts=4000, gfe="g2"), env(ts=1, gfe="g3")],
        lambda event_id: seen_entry(recorded, 0, 1) if event_id == recorded.event_id else None,
        lambda entity: 5000 if entity == "g2" else None,
    )
    assert isinstance(decisions[0], Drop)
    assert decisions[1:] == [Disposition.STALE, Disposition.APPLY]


events_strategy = st.lists(
    st.tuples(st.sampled_from(["g1", "g2"]), st.integers(1, 4), st.booleans()), max_size=12
)


@given(events_strategy, st.integers(1, 12))
def test_batching_decides_exactly_like_one_event_at_a_time(spec, size):
    envelopes = [env(ts=ts, success=ok, gfe=gfe) for gfe, ts, ok in spec]
    seen: dict[str, dict] = {}
    newest: dict[str, int] = {}

    def record(envelope, decision):
        seen[envelope.event_id] = seen_entry(envelope, 0, 1)
        entry = newest_entry(envelope, 0, 1) if decision is Disposition.APPLY else None
        if entry:
            newest[envelope.entity_id] = entry["ts"]

    one_by_one = []
    for envelope in envelopes:
        decision = verdict(seen.get(envelope.event_id), newest.get(envelope.entity_id), envelope)
        one_by_one.append(decision)
        if not isinstance(decision, Drop):
            record(envelope, decision)
    seen.clear()
    newest.clear()
    batched = []
    for start in range(0, len(envelopes), size):
        chunk = envelopes[start : start + size]
        decisions = plan_batch(chunk, seen.get, newest.get)
        batched.extend(decisions)
        for envelope, decision in zip(chunk, decisions, strict=True):
            if not isinstance(decision, Drop):
                record(envelope, decision)
    assert batched == one_by_one
