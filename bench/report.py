"""What every benchmark prints and writes: a table of figures and a JSON file."""

from __future__ import annotations

import json
import os
import platform
import statistics
from pathlib import Path
from typing import Any


def median(values: list[float]) -> float:
    return float(statistics.median(values))


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty list."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def machine(where: dict[str, str]) -> dict[str, Any]:
    """The machine's shape and which process ran where: figures mean little without them."""
    return {
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "where": where,
    }


def write_report(result: dict[str, Any], out: Path, unprinted: tuple[str, ...] = ()) -> None:
    """Write ``result`` as JSON and print it, except bulky keys such as time series."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    shown = {key: value for key, value in result.items() if key not in unprinted}
    width = max(map(len, shown))
    for key, value in shown.items():
        print(f"{key:<{width}}  {value}")
    print(f"written to {out}")
