"""py-spy profiles of benchmark processes, summarised as the frames with the most own time.

``py-spy record --format raw`` writes collapsed stacks (``outer;...;leaf N``,
one line per distinct stack, N samples); a frame's *own* time is the samples
where it is the leaf. Idle threads are left out (py-spy's default), so the
shares are of the time the process was running Python.
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


def py_spy() -> str | None:
    """The py-spy executable (``pip install py-spy``), or None when it is missing."""
    beside = Path(sys.executable).with_name("py-spy")
    return str(beside) if beside.exists() else shutil.which("py-spy")


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


def finish(recording: subprocess.Popen[bytes] | None, out: Path, top: int = 15) -> list[str]:
    """End a recording (SIGINT makes py-spy write what it has), summarise it; empty if none."""
    if recording is None:
        return []
    recording.send_signal(signal.SIGINT)
    try:
        recording.wait(60)
    except subprocess.TimeoutExpired:
        recording.kill()
        recording.wait(5)
    if not out.exists():
        return []
    return [f"{share:5.1f}%  {frame}" for frame, share in top_own(out.read_text(), top)]


def top_own(collapsed: str, top: int = 15) -> list[tuple[str, float]]:
    """The ``top`` leaf frames by own samples, as (frame without line number, percent)."""
    own: Counter[str] = Counter()
    for line in collapsed.splitlines():
        match = _LINE.match(line.strip())
        if not match:
            continue
        leaf = match["stack"].rsplit(";", 1)[-1]
        own[_LINE_NUMBER.sub(")", leaf)] += int(match["count"])
    total = sum(own.values())
    if not total:
        return []
    return [(frame, round(100 * n / total, 1)) for frame, n in own.most_common(top)]
