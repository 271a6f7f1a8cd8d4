"""The repository documents itself: no reference outside it, the contract names every setting."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from cli.env_names import known_env_names

ROOT = Path(__file__).resolve().parents[2]
LINK = re.compile(r"\]\(([^)#\s]+)(?:#[^)]*)?\)")


def tracked_text_files() -> list[Path]:
    names = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    return [
        ROOT / n
        for n in names
        if (ROOT / n).is_file() and not n.endswith((".json", ".png", ".jar"))
    ]


def test_nothing_points_outside_the_repository():
    offenders = []
    for path in tracked_text_files():
        if path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if "shared/" in line or "DESIGN" in line:
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == []


def test_every_relative_link_in_the_docs_resolves_inside_the_repository():
    broken = []
    for doc in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        for target in LINK.findall(doc.read_text()):
            if "://" in target or target.startswith("mailto:"):
                continue
            resolved = (doc.parent / target).resolve()
            if not resolved.is_relative_to(ROOT) or not resolved.exists():
                broken.append(f"{doc.relative_to(ROOT)} -> {target}")
    assert broken == []


def test_the_contract_names_every_setting_the_processes_read():
    contract = (ROOT / "docs" / "contract.md").read_text()
    missing = sorted(
        name
        for name in known_env_names()
        if not name.startswith("OTEL_") and f"`{name}`" not in contract
    )
    assert missing == []
