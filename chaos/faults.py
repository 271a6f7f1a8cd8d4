"""Gray faults: parts that stop answering without going away, and a disk that fills.

A SIGKILL closes every socket at once, so clients learn of it immediately. The
faults here leave sockets open and say nothing (a stopped process, a server
that accepts and never greets), or refuse writes while staying up (a full
disk): the timeouts, buffers and retry paths a clean kill never reaches.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from pathlib import Path

import psutil


def signal_tree(pid: int, sig: signal.Signals) -> None:
    """Signal a process and every descendant (Postgres backends lead their own sessions,
    so a process-group signal would miss them)."""
    root = psutil.Process(pid)
    for process in [root, *root.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess):  # a backend that ended meanwhile
            process.send_signal(sig)


class StalledServer:
    """Accepts TCP connections on a port and never sends a byte: a relay that hung after
    the handshake. ``stop`` closes them all, as a relay that comes back would."""

    def __init__(self) -> None:
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def start(self, port: int) -> None:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", port)

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.append(writer)
        await reader.read()  # read and ignore whatever the client says, until it gives up

    async def stop(self) -> None:
        if self._server is None:
            return
        self._server.close()
        for writer in self._writers:
            writer.close()
        await self._server.wait_closed()
        self._server = None


def mount_tmpfs(path: Path, size_mb: int) -> None:
    """A size-limited tmpfs at ``path`` (root only): a disk that can be filled quickly."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0755", "tmpfs", str(path)],
        check=True,
        capture_output=True,
    )


def unmount(path: Path) -> None:
    """Detach the mount even if a process still holds files there (``umount -l``)."""
    subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)


CHUNK = 1024 * 1024


def fill(mount: Path) -> Path:
    """Take every free block of ``mount`` with one file, appended to on each call (a writer
    that frees some, e.g. Postgres recycling WAL, gets it taken again); delete it to free.

    Allocated a chunk at a time from the file's end: a ``fallocate`` that fails undoes
    what that call allocated, so one call asking for more than is free would leave the
    disk as empty as before.
    """
    filler = mount / "chaos-filler"
    fd = os.open(filler, os.O_CREAT | os.O_WRONLY, 0o600)
    try:
        for chunk in (CHUNK, os.statvfs(mount).f_frsize):
            while True:
                try:
                    os.posix_fallocate(fd, os.fstat(fd).st_size, chunk)
                except OSError:
                    break
    finally:
        os.close(fd)
    return filler


def free_space(mount: Path) -> int:
    stats = os.statvfs(mount)
    return stats.f_bavail * stats.f_frsize
