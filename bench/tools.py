"""Native load generators (wrk, hey): a Python client would be the bottleneck."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from bench.cpu import child_cpu_s

_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _pinned(argv: list[str], cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if cpu is not None else argv


def _lua_string(data: bytes) -> str:
    return "[==[" + data.decode() + "]==]"


def wrk(
    url: str, body: bytes, seconds: float, connections: int, cpu: int | None, workdir: Path
) -> dict[str, float]:
    """Closed loop: as many POSTs as ``connections`` keep-alive connections can do."""
    script = workdir / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {_lua_string(body)}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        'wrk.headers["User-Agent"] = "Spakinect-Webhook/1.0"\n'
    )
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "-s", str(script)]
    return _run(_pinned([*argv, url], cpu), parse_wrk)


def _run(argv: list[str], parse: Callable[[str], dict[str, float]]) -> dict[str, float]:
    """Run a load generator to its end: its figures plus the CPU it used (``load_cpu_s``)."""
    before = child_cpu_s()
    out = subprocess.run(argv, capture_output=True, text=True, check=True).stdout
    return parse(out) | {"load_cpu_s": child_cpu_s() - before}


def _find(pattern: str, out: str, what: str, tool: str) -> re.Match[str]:
    """A figure the report must hold: a missing one is an error, never a zero."""
    match = re.search(pattern, out, re.M)
    if not match:
        raise ValueError(f"no {what} in {tool} output:\n{out}")
    return match


def parse_wrk(out: str) -> dict[str, float]:
    def latency(pct: str) -> float:
        match = _find(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", out, f"{pct}% latency", "wrk")
        return float(match[1]) * _UNITS[match[2]]

    rps = _find(r"Requests/sec:\s+([\d.]+)", out, "Requests/sec", "wrk")
    requests = _find(r"^\s*(\d+) requests in ", out, "request count", "wrk")
    non_2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return {
        "rps": float(rps[1]),
        "requests": float(requests[1]),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": float(non_2xx[1]) if non_2xx else 0.0,
        "socket_errors": float(sum(int(n) for n in re.findall(r"\d+", errors[0])) if errors else 0),
    }


def hey(
    url: str, body: bytes, seconds: float, rate: int, cpu: int | None, workdir: Path
) -> dict[str, float]:
    """Open-ish loop: ``rate`` req/s offered by 50 workers each limited to rate/50."""
    workers = 50
    payload = workdir / "body.json"
    payload.write_bytes(body)
    argv = [
        "hey", "-z", f"{seconds:g}s", "-c", str(workers), "-q", f"{rate / workers:g}",
        "-m", "POST", "-T", "application/json", "-D", str(payload), url,
    ]  # fmt: skip
    return _run(_pinned(argv, cpu), parse_hey)


def parse_hey(out: str) -> dict[str, float]:
    def latency(pct: str) -> float:
        return float(_find(rf"{pct}% in ([\d.]+) secs", out, f"{pct}% latency", "hey")[1]) * 1000

    rps = _find(r"Requests/sec:\s+([\d.]+)", out, "Requests/sec", "hey")
    ok = re.search(r"\[200\]\s+(\d+) responses", out)
    total = sum(int(n) for n in re.findall(r"\[\d+\]\s+(\d+) responses", out))
    return {
        "rps": float(rps[1]),
        "requests": float(total),
        "p50_ms": latency("50"),
        "p99_ms": latency("99"),
        "non_2xx": float(total - (int(ok[1]) if ok else 0)),
    }
