"""The pure parts of the state and pipeline benchmarks: their inputs and the figures they derive."""

from __future__ import annotations

from bench.pipeline_throughput import ratios
from bench.raw_events import with_duplicates
from bench.state_bound import summarise
from events.topics import Topics


def test_preloaded_events_repeat_a_share_of_earlier_ones_after_their_original() -> None:
    messages = with_duplicates(Topics(), "t", total=10_000, duplicate_share=0.2)
    keys = [m.key for m in messages]
    assert len(keys) == 10_000
    assert len(set(keys)) == 8_000
    first_seen: dict[bytes | None, int] = {}
    for position, key in enumerate(keys):
        first_seen.setdefault(key, position)
        # A retry comes within 2,000 originals (and the repeats placed among them).
        assert position - first_seen[key] <= 2_000 * 1.3
    event_ids = {dict(m.headers)["event_id"] for m in messages}
    assert len(event_ids) == 8_000  # a repeat is the same event, not a new one


def point(t: float, handled: int, entries: int, rss: float) -> dict[str, float]:
    return {
        "t_s": t,
        "handled": handled,
        "entries": entries,
        "rss_mib": rss,
        "changelog_mib": entries / 1000,
        "rocksdb_mib": 1.0,
    }


def test_state_figures_are_taken_one_window_after_the_first_event_and_at_the_end() -> None:
    series = [
        point(1, 0, 0, 90),
        point(5, 100, 200, 100),
        point(64, 5000, 9000, 140),
        point(70, 5600, 9100, 141),
        point(200, 20000, 9900, 150),
    ]
    result = summarise(series, events=20000, window=60)
    assert result["at_window_fill"]["t_s"] == 70  # first sample 60 s after handling began
    assert result["at_end"]["t_s"] == 200
    assert result["end_over_fill"]["entries"] == round(9900 / 9100, 3)
    assert result["max_after_fill"]["rss_mib"] == 150
    # 9,100 entries for the 5,500 events of the first window; 9,900 for 14,400 in the last.
    assert result["entries_per_window_event"] == {
        "at_window_fill": round(9100 / (5600 - 100), 3),
        "at_end": round(9900 / (20000 - 5600), 3),
    }


def test_throughput_ratios_compare_ours_with_the_limit_and_the_peer() -> None:
    figures = {"events_per_s": 0, "rows_per_s_steady": 0, "rows": {"spakinect_events": 8}}

    def cpu(total: float) -> dict[str, dict[str, float]]:
        return {"cpu_ms_per_event": {"dedupe_worker": total / 2, "total": total}}

    results = {
        "ours": figures | {"events_per_s": 500.0, "rows_per_s_steady": 800.0} | cpu(1.5),
        "raw_limit": figures | {"events_per_s": 2000.0, "rows_per_s_steady": 4000.0} | cpu(0.3),
        "quix": figures | {"events_per_s": 1000.0, "rows_per_s_steady": 800.0} | cpu(1.0),
        "quix_one_process": figures
        | {"events_per_s": 1250.0, "rows_per_s_steady": 1000.0}
        | cpu(0.75),
    }
    out = ratios(results)
    assert out["a_over_b"] == 0.25
    assert out["a_over_c"] == 0.5
    assert out["a_over_c_steady"] == 1.0
    assert out["a_over_d"] == 0.4
    # CPU per event: ours over the other (above 1: ours costs more per event).
    assert out["a_over_b_cpu_per_event"] == 5.0
    assert out["a_over_c_cpu_per_event"] == 1.5
    assert out["a_over_d_cpu_per_event"] == 2.0
    assert out["same_rows"] is True
    results["quix"] = results["quix"] | {"rows": {"spakinect_events": 7}}
    assert ratios(results)["same_rows"] is False
