"""Webhooks per hour as stacked SVG bars (pure geometry; the template draws it, no JS)."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

WIDTH, HEIGHT = 720, 160
COLORS = ("#2b6cb0", "#dd6b20", "#38a169", "#805ad5")


@dataclass(frozen=True, slots=True)
class Bar:
    x: float
    y: float
    width: float
    height: float
    color: str
    title: str


def per_interval(totals: Sequence[int]) -> list[int]:
    """Messages in each interval from cumulative offsets at its boundaries."""
    return [max(b - a, 0) for a, b in itertools.pairwise(totals)]


def bars(starts: Sequence[datetime], series: Mapping[str, Sequence[int]]) -> list[Bar]:
    """One stacked column per interval, scaled to the busiest one."""
    if not starts:
        return []
    peak = max(
        (sum(values[i] for values in series.values()) for i in range(len(starts))), default=0
    )
    scale = (HEIGHT - 10) / peak if peak else 0.0
    step = WIDTH / len(starts)
    out = []
    for i, start in enumerate(starts):
        y = float(HEIGHT)
        for n, (name, values) in enumerate(series.items()):
            h = values[i] * scale
            if values[i]:
                y -= h
                out.append(
                    Bar(
                        round(i * step + 1, 1),
                        round(y, 1),
                        round(max(step - 2, 1), 1),
                        round(h, 1),
                        COLORS[n % len(COLORS)],
                        f"{start:%Y-%m-%d %H:00} UTC: {values[i]} {name}",
                    )
                )
    return out
