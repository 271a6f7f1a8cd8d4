from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from events.envelope import Disposition, Envelope
from streams.dedupe_logic import (
    Drop,
    ExpiryIndex,
    entity_key,
    newest_in,
    plan_batch,
    seen_in,
    verdict,
    with_event,
)

WINDOW = 60_000


def recorded(*envelopes: Envelope, now_ms: int = 1) -> dict:
    """The entity entry after ``envelopes`` were recorded as applied, in order."""
    entry = None
    for envelope in envelopes:
        decision = Disposition.APPLY if envelope.success else Disposition.UNSUCCESSFUL
        entry = with_event(entry, envelope, decision, partition=0, now_ms=now_ms, window_ms=WINDOW)
    return entry


def plan(batch, entry_of=lambda _: None):
    return plan_batch([(e, 0) for e in batch], entry_of, now_ms=1, window_ms=WINDOW)


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
    entry = recorded(env())
    assert isinstance(verdict(seen_in(entry, env()), newest_in(entry), env()), Drop)


def test_success_is_never_dropped_because_of_an_earlier_failure():
    failed = env(success=False)
    assert verdict(None, None, failed) is Disposition.UNSUCCESSFUL
    entry = recorded(failed)
    assert verdict(seen_in(entry, env()), newest_in(entry), env()) is Disposition.APPLY
    assert isinstance(verdict(seen_in(entry, failed), newest_in(entry), failed), Drop)


def test_older_than_newest_is_stale_equal_or_newer_applies():
    assert verdict(None, 2000, env(ts=1000)) is Disposition.STALE
    assert verdict(None, 1000, env(ts=1000)) is Disposition.APPLY
    assert verdict(None, 1000, env(ts=3000)) is Disposition.APPLY


def test_failures_do_not_advance_the_newest_timestamp():
    assert newest_in(recorded(env(success=False))) is None
    entry = with_event(None, env(ts=5), Disposition.APPLY, partition=2, now_ms=9, window_ms=WINDOW)
    assert entry == {"p": 2, "at": 9, "ts": 5, "seen": {"5": [9, True]}}
    assert newest_in(recorded(env(ts=5), env(ts=7, success=False))) == 5


def test_an_entity_entry_keeps_only_the_event_ids_seen_within_the_window():
    old = with_event(None, env(ts=1), Disposition.APPLY, partition=0, now_ms=0, window_ms=100)
    kept = with_event(old, env(ts=2), Disposition.APPLY, partition=0, now_ms=100, window_ms=100)
    assert set(kept["seen"]) == {"1", "2"}  # the first is exactly one window old
    later = with_event(kept, env(ts=3), Disposition.APPLY, partition=0, now_ms=101, window_ms=100)
    assert set(later["seen"]) == {"2", "3"}
    assert later["ts"] == 3


def test_entities_of_different_event_types_never_share_an_entry():
    visit = env(gfe="x1")
    treatment = visit.model_copy(update={"event": "treatment.updated"})
    assert entity_key(visit) != entity_key(treatment)


def test_expiry_index_pops_only_entries_outside_the_window_per_partition():
    index = ExpiryIndex(window_ms=100)
    index.add(0, 10, "a")
    index.add(0, 150, "b")
    index.add(1, 10, "c")
    assert index.expired(0, now_ms=200) == ["a"]
    assert index.expired(0, now_ms=200) == []
    assert index.expired(1, now_ms=109) == []
    assert index.expired(1, now_ms=111) == ["c"]
    assert len(index) == 1


def test_expiry_index_skips_an_entry_rewritten_inside_the_window():
    index = ExpiryIndex(window_ms=100)
    index.add(0, 10, "gfe_1")
    index.add(0, 90, "gfe_1")  # the same key written again later
    assert len(index) == 1
    assert index.expired(0, now_ms=150) == []  # its first write is outside, the entry is not
    assert index.expired(0, now_ms=191) == ["gfe_1"]
    assert len(index) == 0


def test_overdue_is_zero_while_sweeps_keep_up_and_ignores_unswept_quiet_partitions():
    index = ExpiryIndex(window_ms=100)
    index.add(0, 10, "a")
    index.add(1, 10, "quiet")  # partition 1 gets no event, so nothing sweeps it
    assert index.overdue_ms() == 0
    assert index.expired(0, now_ms=500) == ["a"]
    assert index.overdue_ms() == 0


def test_overdue_grows_when_a_sweep_leaves_entries_past_the_window():
    index = ExpiryIndex(window_ms=100)
    for i in range(3):
        index.add(0, 10 + i, f"k{i}")
    index.add(0, 5, "k0")  # k0 is rewritten later: only its write at 15 is current
    index.add(0, 15, "k0")
    assert index.expired(0, now_ms=400, limit=1) == ["k1"]  # the sweep was cut short
    assert index.overdue_ms() == 400 - 100 - 12  # k2, written at 12, should be gone
    assert index.expired(0, now_ms=400, limit=10) == ["k2", "k0"]
    assert index.overdue_ms() == 0


def test_a_batch_catches_duplicates_and_older_events_among_its_own_events():
    batch = [env(ts=2000), env(ts=2000), env(ts=1000), env(ts=9, success=False), env(ts=9)]
    decisions = plan(batch).verdicts
    assert decisions[0] is Disposition.APPLY
    assert isinstance(decisions[1], Drop)
    assert decisions[2] is Disposition.STALE
    assert decisions[3] is Disposition.UNSUCCESSFUL
    assert decisions[4] is Disposition.STALE  # the failure did not drop it; 2000 is newer


def test_a_batch_reads_the_table_for_what_earlier_batches_recorded():
    entry = recorded(env(ts=5000, gfe="g2"))
    decisions = plan(
        [env(ts=5000, gfe="g2"), env(ts=4000, gfe="g2"), env(ts=1, gfe="g3")],
        lambda key: entry if key == "visit.completed:g2" else None,
    ).verdicts
    assert isinstance(decisions[0], Drop)
    assert decisions[1:] == [Disposition.STALE, Disposition.APPLY]


def test_a_batch_plans_one_write_per_entity_it_touched():
    result = plan([env(ts=1), env(ts=1), env(ts=2), env(ts=3, gfe="g2")])
    assert set(result.entries) == {"visit.completed:g1", "visit.completed:g2"}
    assert set(result.entries["visit.completed:g1"]["seen"]) == {"1", "2"}
    assert (
        plan([env(ts=1)], lambda _: recorded(env(ts=1))).entries == {}
    )  # duplicates write nothing


events_strategy = st.lists(
    st.tuples(st.sampled_from(["g1", "g2"]), st.integers(1, 4), st.booleans()), max_size=12
)


@given(events_strategy, st.integers(1, 12))
def test_batching_decides_exactly_like_one_event_at_a_time(spec, size):
    envelopes = [env(ts=ts, success=ok, gfe=gfe) for gfe, ts, ok in spec]
    table: dict[str, dict] = {}
    one_by_one = []
    for envelope in envelopes:
        result = plan([envelope], table.get)
        one_by_one.extend(result.verdicts)
        table.update(result.entries)
    table.clear()
    batched = []
    for start in range(0, len(envelopes), size):
        result = plan(envelopes[start : start + size], table.get)
        batched.extend(result.verdicts)
        table.update(result.entries)
    assert batched == one_by_one


@given(events_strategy)
def test_one_at_a_time_follows_the_rules(spec):
    """Duplicate = same event_id already passed (a failure never hides a success); stale = older."""
    envelopes = [env(ts=ts, success=ok, gfe=gfe) for gfe, ts, ok in spec]
    table: dict[str, dict] = {}
    passed: dict[str, bool] = {}
    newest: dict[str, int] = {}
    for envelope in envelopes:
        result = plan([envelope], table.get)
        table.update(result.entries)
        decision = result.verdicts[0]
        before = passed.get(envelope.event_id)
        if before is not None and (before or not envelope.success):
            assert isinstance(decision, Drop)
            continue
        assert not isinstance(decision, Drop)
        passed[envelope.event_id] = envelope.success
        if not envelope.success:
            assert decision is Disposition.UNSUCCESSFUL
        elif envelope.timestamp < newest.get(envelope.entity_id, 0):
            assert decision is Disposition.STALE
        else:
            assert decision is Disposition.APPLY
            newest[envelope.entity_id] = envelope.timestamp
