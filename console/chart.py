"""Webhooks per interval as stacked SVG bars with a time axis, a count axis and each column's
count written on it (pure geometry; the template draws it, no JS)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

WIDTH, HEIGHT = 720, 200
LEFT, TOP, BOTTOM = 40, 16, 22
"""Room for the count axis, the counts over the columns and the time axis."""
COLORS = ("#2b6cb0", "#dd6b20", "#38a169", "#805ad5")


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


@dataclass(frozen=True, slots=True)
class Label:
    x: float
    y: float
    text: str


@dataclass(slots=True)
class Chart:
    bars: list[Bar] = field(default_factory=list)
    times: list[Label] = field(default_factory=list)  # under the columns
    counts: list[Label] = field(default_factory=list)  # the count axis, 0 to the peak
    values: list[Label] = field(default_factory=list)  # each column's total, over it
    grid: list[float] = field(default_factory=list)  # y of each count-axis line
    baseline: float = HEIGHT - BOTTOM


def per_interval(totals: Sequence[int]) -> list[int]:
    """Messages in each interval from cumulative offsets at its boundaries."""
    return [max(b - a, 0) for a, b in itertools.pairwise(totals)]


def _ticks(peak: int) -> list[int]:
    """0, the peak and a middle value when it is a whole number."""
    if peak <= 0:
        return [0]
    return sorted({0, peak // 2, peak} if peak >= 2 else {0, peak})


def chart(
    starts: Sequence[datetime],
    series: Mapping[str, Sequence[int]],
    *,
    label: str = "%H:00",
    every: int = 1,
    unit: str = "hour",
) -> Chart:
    """One stacked column per interval, scaled to the busiest; a time label under every
    ``every``-th column (``label`` its strftime), every column's total over it."""
    out = Chart()
    if not starts:
        return out
    totals = [sum(values[i] for values in series.values()) for i in range(len(starts))]
    peak = max(totals, default=0)
    plot = HEIGHT - TOP - BOTTOM
    scale = plot / peak if peak else 0.0
    step = (WIDTH - LEFT) / len(starts)
    for tick in _ticks(peak):
        y = round(out.baseline - tick * scale, 1)
        out.grid.append(y)
        out.counts.append(Label(LEFT - 4, y + 4, str(tick)))
    for i, start in enumerate(starts):
        x = LEFT + i * step
        y = out.baseline
        for n, (name, values) in enumerate(series.items()):
            if values[i]:
                h = values[i] * scale
                y -= h
                title = f"{start:%Y-%m-%d %H:00} UTC ({unit}): {values[i]} {name}"
                color = COLORS[n % len(COLORS)]
                width = max(step - 2, 1)
                out.bars.append(
                    Bar(round(x + 1, 1), round(y, 1), round(width, 1), round(h, 1), color, title)
                )
        if totals[i]:
            out.values.append(Label(round(x + step / 2, 1), round(y - 3, 1), str(totals[i])))
        if i % every == 0:
            out.times.append(Label(round(x + step / 2, 1), HEIGHT - 6, f"{start:{label}}"))
    return out
