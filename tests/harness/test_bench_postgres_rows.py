"""The writer's pure-path benchmark: realistic records, and a figure for each part."""

from bench.postgres_rows import PARTS, build_records, time_path
from events.registry import TREATMENT_UPDATED, VISIT_COMPLETED
from sinks.postgres.rows import batch_rows


def test_records_mix_visits_with_patients_treatments_and_stale_events():
    records = build_records(40)
    kinds = [r.envelope.event for r in records]
    assert kinds.count(VISIT_COMPLETED) > kinds.count(TREATMENT_UPDATED) > 0
    assert len({r.envelope.event_id for r in records}) == 40
    rows = batch_rows(records)
    assert 0 < len(rows.visits) < kinds.count(VISIT_COMPLETED)  # repeated gfe_ids collapse
    assert rows.not_applied
    assert all(r[4] and r[7] for r in rows.visits)  # each visit has a patient name and email


def test_each_part_of_the_path_gets_a_positive_figure_per_event():
    figures = time_path(60, 25)
    assert set(figures) == {*PARTS, "total"}
    assert all(figures[part] > 0 for part in PARTS)
    assert figures["total"] == sum(figures[part] for part in PARTS)
