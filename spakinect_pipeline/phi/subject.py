"""Whom ``phi forget`` erases: the email from an argument, stdin or a file (pure but for reads).

An email on the command line shows in the process list (``ps``) and the shell
history; ``--patient-email -`` (stdin) and ``--patient-email-file`` keep it
out of both. Only the first line counts; it is stripped.
"""

from __future__ import annotations

from pathlib import Path
from typing import TextIO

from spakinect_pipeline.config import ConfigError


def patient_email(argument: str | None, file: str | None, stdin: TextIO) -> str | None:
    """The email to forget, or None when the forget is by gfe_id."""
    if file is not None:
        try:
            text = Path(file).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"--patient-email-file: cannot read it ({exc.strerror})") from None
        return _first_line(text, "--patient-email-file")
    if argument == "-":
        return _first_line(stdin.readline(), "--patient-email -")
    return argument


def _first_line(text: str, what: str) -> str:
    lines = text.splitlines()
    email = lines[0].strip() if lines else ""
    if "@" not in email:
        raise ConfigError(f"{what}: no email on the first line")  # never echo what was read
    return email
