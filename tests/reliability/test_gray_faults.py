"""The gray-fault tools of ``make chaos`` themselves: each fault really happens and is undone.

Root only (a tmpfs mount, a network namespace), as CI runs; no service needed.
"""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from chaos.faults import StalledServer, fill, free_space, mount_tmpfs, unmount
from chaos.netns import Partition
from devstack.process import free_port


async def test_a_stalled_server_accepts_says_nothing_and_hangs_up_on_stop() -> None:
    server = StalledServer()
    port = free_port()
    await server.start(port)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(reader.read(1), 0.5)  # no greeting, as a hung relay
        assert server.accepted == 1
        await server.stop()
        assert await asyncio.wait_for(reader.read(1), 5) == b""  # closed: the client retries
    finally:
        writer.close()


def test_fill_leaves_no_space_and_deleting_the_filler_gives_it_back(tmp_path: Path) -> None:
    mount = tmp_path / "disk"
    mount_tmpfs(mount, 8)
    try:
        (mount / "data").write_bytes(b"x" * 4096)
        (mount / "wal").write_bytes(b"w" * 1024 * 1024)
        filler = fill(mount)
        assert free_space(mount) == 0
        with pytest.raises(OSError, match="No space left"):
            (mount / "more").write_bytes(b"x" * 65536)
        (mount / "wal").unlink()  # the service frees some (Postgres recycles a WAL file)
        assert free_space(mount) >= 1024 * 1024
        assert fill(mount) == filler
        assert free_space(mount) == 0  # taken again: the disk stays full for the whole fault
        filler.unlink()
        assert free_space(mount) > 7 * 1024 * 1024
        assert (mount / "data").read_bytes() == b"x" * 4096  # what was there stays
    finally:
        unmount(mount)
    assert not any(mount.iterdir())  # unmounted: the tmpfs's files are gone


CONNECT = """
import socket, sys
s = socket.socket()
s.settimeout(2)
try:
    s.connect((sys.argv[1], int(sys.argv[2])))
    print("connected")
except OSError as exc:
    print(type(exc).__name__)
"""


def test_a_partition_drops_the_ingress_link_silently_and_is_removed(tmp_path: Path) -> None:
    partition = Partition()
    partition.create()
    try:
        with socket.socket() as kafka:
            kafka.bind((partition.kafka_ip, 0))
            kafka.listen()
            port = str(kafka.getsockname()[1])

            def connect() -> str:
                argv = partition.wrap([sys.executable, "-c", CONNECT, partition.kafka_ip, port])
                return subprocess.run(argv, capture_output=True, text=True, check=True).stdout

            assert connect().strip() == "connected"
            partition.cut()
            assert connect().strip() == "TimeoutError"  # no refusal, no unreachable: silence
            partition.restore()
            assert connect().strip() == "connected"
    finally:
        partition.delete()
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert partition.name not in namespaces
    links = subprocess.run(["ip", "link"], capture_output=True, text=True).stdout
    assert partition.kafka_host not in links
    assert partition.vendor_host not in links
