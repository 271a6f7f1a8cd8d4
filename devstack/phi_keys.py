"""Local patient-data keys for ``make up`` and the tests: generated once into ``phi.env``.

Production supplies ``PHI_ENCRYPTION_KEYS`` and ``PHI_INDEX_KEY`` itself (the
stages refuse to start without them); locally a fresh pair is written to
``.data/phi.env`` (mode 0600) on the first ``make up`` and reused after, so the
local database stays readable across restarts.
"""

from __future__ import annotations

import os
from pathlib import Path

from spakinect_pipeline.phi.crypto import new_key_entry

FILE_NAME = "phi.env"
NAMES = ("PHI_ENCRYPTION_KEYS", "PHI_INDEX_KEY")


def new_phi_env() -> dict[str, str]:
    return {
        "PHI_ENCRYPTION_KEYS": new_key_entry("local1"),
        "PHI_INDEX_KEY": new_key_entry().split(":", 1)[1],
    }


def local_phi_env(root: Path) -> tuple[dict[str, str], bool]:
    """(the keys, whether they were generated now) from ``root/phi.env``."""
    path = root / FILE_NAME
    if path.exists():
        pairs = (line.partition("=") for line in path.read_text().splitlines())
        found = {k.strip(): v.strip() for k, sep, v in pairs if sep and k.strip() in NAMES}
        if set(found) == set(NAMES):
            return found, False
    env = new_phi_env()
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write("# Local patient-data keys, made by `make up`; never use them in production.\n")
        out.writelines(f"{k}={v}\n" for k, v in env.items())
    return env, True
