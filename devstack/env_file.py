"""``KEY=value`` files a shell can source (``set -a; . .data/stack.env``) and Python can read.

Values a shell would misread (a TLS DSN's ``&`` and ``?``) are single-quoted;
the file is readable by its owner only, since passwords may be in it.
"""

from __future__ import annotations

import shlex
from pathlib import Path


def write_env_file(path: Path, values: dict[str, str]) -> None:
    """Write ``values`` aside and rename: whoever waits for ``path`` reads it whole."""
    draft = path.with_name(path.name + ".draft")
    draft.unlink(missing_ok=True)
    draft.touch(0o600)
    draft.write_text("".join(f"{key}={shlex.quote(value)}\n" for key, value in values.items()))
    draft.replace(path)


def read_env_file(path: Path) -> dict[str, str]:
    """The values :func:`write_env_file` wrote, unquoted as a shell would."""
    values = {}
    for line in path.read_text().splitlines():
        key, sep, raw = line.partition("=")
        if sep:
            words = shlex.split(raw)
            values[key] = words[0] if words else ""
    return values
