"""One step of a lookup's timeline (its own module: the timeline and the replays use it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(slots=True)
class Step:
    """One stage's part: ``done``, ``failed``, ``skipped`` or ``waiting`` (with who holds it)."""

    stage: str
    state: str
    at: datetime | None
    detail: str
