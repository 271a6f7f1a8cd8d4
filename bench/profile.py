"""py-spy profiles of benchmark processes, summarised by own and by inclusive time.

``py-spy record --format raw`` writes collapsed stacks (``outer;...;leaf N``,
one line per distinct stack, N samples); a frame's *own* time is the samples
where it is the leaf, its *inclusive* time the samples where it is anywhere on
the stack (what a change to it and what it calls could save). Idle threads are
left out (py-spy's default), so the shares are of the time the process was
running Python. The collapsed stacks are kept under ``bench/results/profiles``
(flame graph input: ``inferno-flamegraph`` or speedscope read them).
"""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(?P<stack>.*) (?P<count>\d+)$")
_LINE_NUMBER = re.compile(r":\d+\)$")


KEPT = Path(__file__).resolve().parent / "results" / "profiles"


def py_spy() -> str | None:
    """The py-spy executable (``pip install py-spy``), or None when it is missing."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


def require_py_spy() -> None:
    """``--profile`` without py-spy is an error, not a run with empty profiles."""
    if py_spy() is None:
        raise SystemExit("--profile needs py-spy: make venv installs it (.venv/bin/py-spy)")


def start_recording(pid: int, seconds: float | None, out: Path) -> subprocess.Popen[bytes] | None:
    """Sample ``pid`` into ``out`` (collapsed stacks) for ``seconds`` (None: until
    :func:`finish`); None without py-spy."""
    executable = py_spy()
    if executable is None:
        return None
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [executable, "record", "--pid", str(pid)]
    if seconds is not None:
        argv += ["--duration", f"{max(1, round(seconds))}"]
    argv += ["--format", "raw", "--rate", "200", "--nonblocking", "--output", str(out)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def finish(
    recording: subprocess.Popen[bytes] | None, out: Path, name: str, top: int = 15
) -> dict[str, list[str]]:
    """End a recording (SIGINT makes py-spy write what it has), keep it as ``KEPT/name.txt``
    and summarise it: ``own`` and ``inclusive`` top frames (empty without a recording)."""
    if recording is None:
        return {"own": [], "inclusive": []}
    recording.send_signal(signal.SIGINT)
    try:
        recording.wait(60)
    except subprocess.TimeoutExpired:
        recording.kill()
        recording.wait(5)
    if not out.exists():
        return {"own": [], "inclusive": []}
    collapsed = out.read_text()
    KEPT.mkdir(parents=True, exist_ok=True)
    (KEPT / f"{name}.txt").write_text(collapsed)
    return {
        "own": [f"{share:5.1f}%  {frame}" for frame, share in top_own(collapsed, top)],
        "inclusive": [f"{share:5.1f}%  {frame}" for frame, share in top_inclusive(collapsed, top)],
    }


def _stacks(collapsed: str) -> list[tuple[list[str], int]]:
    stacks = []
    for line in collapsed.splitlines():
        match = _LINE.match(line.strip())
        if match:
            frames = [_LINE_NUMBER.sub(")", f) for f in match["stack"].split(";")]
            stacks.append((frames, int(match["count"])))
    return stacks


def _shares(counts: Counter[str], total: int, top: int) -> list[tuple[str, float]]:
    if not total:
        return []
    return [(frame, round(100 * n / total, 1)) for frame, n in counts.most_common(top)]


def top_own(collapsed: str, top: int = 15) -> list[tuple[str, float]]:
    """The ``top`` leaf frames by own samples, as (frame without line number, percent)."""
    own: Counter[str] = Counter()
    stacks = _stacks(collapsed)
    for frames, count in stacks:
        own[frames[-1]] += count
    return _shares(own, sum(c for _, c in stacks), top)


def top_inclusive(collapsed: str, top: int = 15) -> list[tuple[str, float]]:
    """The ``top`` frames by the samples they are anywhere on the stack in (once per stack).

    Frames on every stack (the thread's entry points) say nothing and are left out.
    """
    inclusive: Counter[str] = Counter()
    stacks = _stacks(collapsed)
    total = sum(c for _, c in stacks)
    for frames, count in stacks:
        for frame in set(frames):
            inclusive[frame] += count
    telling = Counter({f: n for f, n in inclusive.items() if n < total})
    return _shares(telling, total, top)
