"""The stage registry: every stage a worker can run, by name, and how to build it.

The worker, the CLI, devstack and the chaos stack all read this one table.
Builders import their stage's module only when called, so reading the names
costs no Faust or database driver import.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from streams.runner import StageEnv, StageParts

Builder = Callable[["StageEnv"], "StageParts"]


def _dedupe(env: StageEnv) -> StageParts:
    from streams.dedupe import build

    return build(env)


def _postgres(env: StageEnv) -> StageParts:
    from streams.sink_stage import build_postgres

    return build_postgres(env)


def _email(env: StageEnv) -> StageParts:
    from streams.email_stage import build

    return build(env)


STAGES: dict[str, Builder] = {"dedupe": _dedupe, "postgres": _postgres, "email": _email}
STAGE_NAMES = tuple(STAGES)

# The Faust tables each stage declares (streams.dedupe, streams.email_stage), so that
# `spakinect-pipeline topics` can create their changelogs ahead of time, without the
# stages' own settings; tests/unit/test_changelog_names.py checks it against the built apps.
STAGE_TABLES: dict[str, tuple[str, ...]] = {"dedupe": ("entities",), "email": ("sent",)}


def changelog_topic_names(app_id: str) -> list[str]:
    """Every stage's changelog topics: Faust names them ``<group>-<table>-changelog``."""
    return [
        f"{app_id}-{stage}-{table}-changelog"
        for stage, tables in STAGE_TABLES.items()
        for table in tables
    ]
