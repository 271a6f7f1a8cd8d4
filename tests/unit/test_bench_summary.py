"""bench.summary: rows, ratios and aim marks from results shaped like the benchmarks' JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from bench.summary import NOT_RUN, Row, as_json, read_results, render, summarise


def e2e(p50: float, p99: float, answer_p99: float, non_200: int = 0) -> dict[str, Any]:
    """An ``e2e_latency`` result: 1,000 visits, 1,200 deliveries, CPU per delivery."""
    return {
        "events": 1000,
        "deliveries": 1200,
        "status_200": 1200 - non_200,
        "non_200": non_200,
        "answer_ms_p50": 3.0,
        "answer_ms_p99": answer_p99,
        "rows": 1000,
        "e2e_ms_p50": p50,
        "e2e_ms_p99": p99,
        "cpu_ms_per_event": {
            "kafka": 0.3,
            "ingress": 0.4,
            "dedupe_worker": 0.3,
            "postgres_worker": 0.1,
            "load": 0.25,
            "total": 1.35,
        },
        "cpu_cores": {"kafka": 0.15, "ingress": 0.2, "load": 0.1, "total": 0.6},
    }


def drain_variant(events_per_s: float, cpu: float) -> dict[str, Any]:
    return {"events_per_s": events_per_s, "cpu_ms_per_event": {"kafka": 0.05, "total": cpu}}


DRAIN = {
    "events": 200000,
    "ours": drain_variant(5000.0, 0.25),
    "raw_limit": drain_variant(10000.0, 0.1),
    "quix": drain_variant(4000.0, 0.5),
}
INGRESS = {
    "a_kafka.max.rps": 3000.0,
    "a_kafka.max.cpu_ms_per_req.server": 0.24,
    "b_noop.max.rps": 6000.0,
    "b_noop.max.cpu_ms_per_req.server": 0.16,
    "c_bare.max.rps": 10000.0,
    "c_bare.max.cpu_ms_per_req.server": 0.09,
    "ratio_a_over_c.max.rps": 0.3,
}


def by_point(rows: list[Row]) -> dict[str, Row]:
    return {row.point: row for row in rows}


def marks(row: Row) -> dict[str, str]:
    return {aim.figure: aim.mark for aim in row.aims}


def test_live_row_stack_cpu_leaves_out_the_load_generator() -> None:
    row = by_point(summarise({"e2e_latency_600.json": e2e(40.0, 90.0, 20.0)}))["live 600 POSTs/s"]
    assert row.figures["visits_per_s"] == 500  # 600 POSTs/s, 1,200 deliveries of 1,000 visits
    assert row.figures["stack_core_ms"] == 1.1  # 1.35 total - 0.25 load
    assert row.figures["stack_cores"] == 0.5
    assert row.figures["kept_up"] == "yes"
    assert row.figures["ingress_core_ms"] == 0.4
    assert "load_core_ms" not in row.figures
    assert "total_core_ms" not in row.figures
    assert marks(row) == {"e2e_p99_ms": "✓", "answer_p99_ms": "✓", "stack_core_ms": "✓"}


def test_live_rows_missing_aims_and_falling_behind() -> None:
    rows = by_point(
        summarise(
            {
                "e2e_latency_1200.json": e2e(60.0, 300.0, 80.0, non_200=3),
                "e2e_latency_12.json": e2e(25.0, 40.0, 5.0),
            }
        )
    )
    peak = rows["live 1,200 POSTs/s"]
    assert peak.figures["kept_up"] == "no (non_200 3, rows missing 0)"
    assert marks(peak) == {"answer_p99_ms": "✓", "e2e_p99_ms": "✗"}
    quiet = rows["live 12 POSTs/s (quiet hours)"]
    assert quiet.figures["kept_up"] == "yes"
    assert marks(quiet) == {"e2e_p50_ms": "✗", "e2e_p99_ms": "✓"}


def test_drain_ratios_against_every_peer_present() -> None:
    row = by_point(summarise({"pipeline_throughput.json": DRAIN}))["drain"]
    assert row.figures["ours_over_quix_rate"] == 1.25
    assert row.figures["ours_over_quix_cpu"] == 0.5
    assert row.figures["ours_over_raw_limit_rate"] == 0.5
    assert row.figures["raw_limit_core_ms"] == 0.1
    assert "quix_one_process_events_per_s" not in row.figures
    assert marks(row) == {"ours_over_quix_rate": "✓", "ours_core_ms": "✓"}


def test_drain_without_the_peer_has_no_mark_for_it() -> None:
    row = summarise({"pipeline_throughput.json": {"ours": drain_variant(5000.0, 0.34)}})[3]
    assert marks(row) == {"ours_over_quix_rate": "-", "ours_core_ms": "✗"}


def test_ingress_ratios_over_the_bare_route() -> None:
    row = by_point(summarise({"ingress.json": INGRESS}))["ingress"]
    assert row.figures["a_req_per_s"] == 3000.0
    assert row.figures["c_server_core_ms"] == 0.09
    assert row.figures["a_over_c"] == INGRESS["ratio_a_over_c.max.rps"]
    assert row.figures["b_over_c"] == 0.6
    assert marks(row) == {"a_over_c": "✗", "b_over_c": "✗"}


def test_missing_files_say_not_run(tmp_path: Path) -> None:
    (tmp_path / "ingress.json").write_text(json.dumps(INGRESS))
    rows = summarise(read_results(tmp_path))
    assert [row.point for row in rows if row.figures] == ["ingress"]
    table = render(rows).splitlines()
    assert len(table) == len(rows) == 6
    assert table[0].startswith("live 12 POSTs/s (quiet hours)  not run")
    assert "- e2e_p50_ms ≤ 20" in table[0]
    assert as_json(rows)["drain"]["figures"] == NOT_RUN
    assert as_json(rows)["ingress"]["aims"][0]["mark"] == "✗"
