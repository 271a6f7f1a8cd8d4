"""The Postgres writer's pure per-event path, timed: rows, erasure markers, sealing, columns.

What :meth:`sinks.postgres.writer.PostgresSink.write` does to a batch before
and around its SQL (``batch_rows``, ``markers``, ``protect``, ``columns``,
``sources``), on records decoded as the worker decodes them (the vendor's
visit sample for many patients, some repeated in a batch, a third of them
treatment updates, a few stale), with no Kafka or Postgres. The worker's
profile hides this path among the consumer's costs; here it is alone.

With ``--baseline REF`` the same path of git ``REF``'s tree is timed too, in
child processes alternated with this checkout's (A B A B ...), so both
figures share the machine's noise; reported: ns per event of each part, the
median over rounds, and the ratio ours/baseline.

    python -m bench.postgres_rows [--events 20000] [--batch 500] [--rounds 5] [--baseline REF]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# Only the child's imports: it may run against an older tree (PYTHONPATH), so nothing
# from bench/ and only the writer's long-standing names.
PARTS = ("batch_rows", "markers", "protect", "columns")


def build_records(events: int) -> list[Any]:
    """``events`` records as the writer gets them: envelopes encoded, then decoded."""
    from events.envelope import Disposition, Record, decode_envelope, encode_envelope
    from events.messages import SourceMessage
    from events.samples import SAMPLES, sample_visit

    records = []
    for i in range(events):
        if i % 3 == 2:
            payload = dict(SAMPLES["treatment.updated"], timestamp=1714675200000 + i)
            payload["data"] = dict(payload["data"], treatment_id=f"treatment_{i % 50:03d}")
            event = "treatment.updated"
        else:
            gfe = f"gfe_{i // 4:08d}"  # about every other visit of a batch shares its gfe_id
            payload = sample_visit(gfe, 1714675200000 + i)
            payload["data"]["patient_details"] = {
                "name": f"Patient {i // 4}",
                "first_name": "Patient",
                "last_name": f"{i // 4}",
                "email": f"patient.{i // 4}@example.com",
            }
            event = "visit.completed"
        disposition = Disposition.STALE if i % 20 == 19 else Disposition.APPLY
        value = encode_envelope(
            event_id=f"{event}:{i}",
            event=event,
            received_at=datetime(2026, 11, 29, tzinfo=UTC),
            payload=payload,
            disposition=disposition,
        )
        source = SourceMessage("clean", i % 6, i, None, None, ())
        records.append(Record(decode_envelope(value), source))
    return records


def time_path(events: int, batch: int) -> dict[str, float]:
    """Ns per event of each part of the writer's pure path over ``events`` records."""
    from sinks.postgres.protect import BatchHashes, Protection, markers, protect
    from sinks.postgres.rows import batch_rows, columns, sources
    from spakinect_pipeline.phi.crypto import keyring_from, new_key_entry

    keyring = keyring_from(new_key_entry("bench"), new_key_entry().split(":", 1)[1])
    records = build_records(events)
    batches = [records[i : i + batch] for i in range(0, len(records), batch)]
    now = datetime.now(UTC)
    spent = dict.fromkeys(PARTS, 0)
    clock = time.perf_counter_ns
    for chunk in batches:
        t0 = clock()
        rows = batch_rows(chunk)
        t1 = clock()
        hashes = BatchHashes(keyring)
        found = markers(rows, hashes)
        t2 = clock()
        sealed = protect(rows, Protection(keyring, now, frozenset(), None, hashes))
        t3 = clock()
        columns(sealed.events, 10)
        sources(chunk)
        columns(sealed.visits, 12)
        columns(sealed.visit_treatments, 3)
        columns(sealed.treatments, 6)
        t4 = clock()
        assert found, "a batch with visits has markers"
        for part, took in zip(PARTS, (t1 - t0, t2 - t1, t3 - t2, t4 - t3), strict=True):
            spent[part] += took
    per_event = {part: took / events for part, took in spent.items()}
    per_event["total"] = sum(per_event.values())
    return per_event


def child_run(tree: Path, args: argparse.Namespace) -> dict[str, float]:
    """One timing in a fresh interpreter that imports the writer from ``tree``."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    # -P: bench/ (this file's folder) must not shadow modules such as the stdlib's profile.
    command = [sys.executable, "-P", __file__, "--child", "--events", str(args.events)]
    out = subprocess.run(
        [*command, "--batch", str(args.batch)], env=env, cwd=tree, check=True,
        capture_output=True, text=True,
    )  # fmt: skip
    result: dict[str, float] = json.loads(out.stdout)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument(
        "--batch", type=int, default=500, help="records a batch (STREAMS_BATCH_MAX)"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--baseline", help="git ref whose writer path is timed alongside")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(time_path(args.events, args.batch)))
        return
    repo = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(repo))
    from bench.baseline import checkout
    from bench.report import machine, median, write_report

    with tempfile.TemporaryDirectory() as scratch:
        trees = {"ours": repo}
        if args.baseline:
            trees["baseline"] = checkout(args.baseline, Path(scratch) / "baseline")
        runs: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
        for _ in range(args.rounds):
            for name, tree in trees.items():
                runs[name].append(child_run(tree, args))
    result: dict[str, Any] = {
        "events": args.events,
        "batch": args.batch,
        "rounds": args.rounds,
        "baseline": args.baseline,
        "machine": machine({"all": "this process's children"}),
    }
    for name, timings in runs.items():
        result[f"{name}_ns_per_event"] = {
            part: round(median([t[part] for t in timings])) for part in (*PARTS, "total")
        }
    if args.baseline:
        ours, base = result["ours_ns_per_event"], result["baseline_ns_per_event"]
        result["ours_over_baseline"] = {part: round(ours[part] / base[part], 3) for part in ours}
    write_report(result, args.out or repo / "bench" / "results" / "postgres_rows.json")


if __name__ == "__main__":
    main()
