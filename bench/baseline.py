"""Running a benchmark's processes as deployed, from this checkout or from a git ref's tree.

``--baseline REF`` runs the same processes from ``git archive REF`` beside
this checkout's, in the same session, so before/after figures share the
machine's noise. The baseline's tree goes first on ``PYTHONPATH`` (and is
the working directory), ahead of the editable install of this checkout.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from devstack import REPO

# Benchmarks run the ingress and the workers as production does: INFO, JSON logs
# (metrics are always on). A quieter level would flatter the figures.
DEPLOYED_ENV = {"LOG_LEVEL": "INFO", "LOG_FORMAT": "json"}


def checkout(ref: str, into: Path) -> Path:
    """The tree of git ``ref`` (no history) in ``into``: the baseline's code."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", ref], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


# The CLI's module: today's, and that of trees older than the cli/ package (for --baseline).
CLI_MODULES = ("cli.main", "spakinect_pipeline.cli")


def cli_module(tree: Path) -> str:
    """The module that runs ``spakinect-pipeline`` from ``tree``."""
    return CLI_MODULES[0] if (tree / "cli" / "main.py").exists() else CLI_MODULES[1]


def tree_env(tree: Path) -> dict[str, str]:
    """Env that makes ``python -m ...`` import our packages from ``tree``."""
    return {"PYTHONPATH": str(tree)}
