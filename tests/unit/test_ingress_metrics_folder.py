"""The workers' shared metrics folder: how ``PROMETHEUS_MULTIPROC_DIR`` is read, what a start
empties, and live gauges of dead workers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from prometheus_client.mmap_dict import MmapedDict, mmap_key

from ingress.metrics import IngressMetrics
from ingress.workers import OWNED_PREFIX, metrics_folder, remove_dead_owned_dirs


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def in_flight_file(folder: Path, pid: int, value: float) -> None:
    """What a worker killed with requests in flight leaves behind."""
    name = "ingress_in_flight_requests"
    mmap = MmapedDict(str(folder / f"gauge_livesum_{pid}.db"))
    mmap.write_value(mmap_key(name, name, [], [], "Requests being handled"), value, 0.0)
    mmap.close()


def in_flight(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("ingress_in_flight_requests")]


def test_a_dead_workers_in_flight_requests_leave_the_sum(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    in_flight_file(tmp_path, dead_pid(), 3)
    text = IngressMetrics.create().exposition().decode()
    assert in_flight(text) == []  # no live worker has a gauge file here
    assert not list(tmp_path.glob("gauge_livesum_*.db"))


def test_a_live_workers_in_flight_requests_stay(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    in_flight_file(tmp_path, os.getpid(), 2)
    in_flight_file(tmp_path, dead_pid(), 3)
    text = IngressMetrics.create().exposition().decode()
    assert in_flight(text) == ["ingress_in_flight_requests 2.0"]


def test_an_operator_folder_is_created_and_emptied_of_a_previous_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "metrics"
    folder.mkdir()
    (folder / "counter_123.db").write_bytes(b"previous run")
    (folder / "README").write_text("not ours")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(folder))
    assert metrics_folder() == (str(folder), False)
    assert sorted(p.name for p in folder.iterdir()) == ["README"]
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "absent" / "metrics"))
    assert metrics_folder() == (str(tmp_path / "absent" / "metrics"), False)
    assert (tmp_path / "absent" / "metrics").is_dir()


@pytest.mark.parametrize("value", [None, ""])
def test_unset_or_empty_means_a_temporary_folder_the_supervisor_owns(
    value: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if value is None:
        monkeypatch.delenv("PROMETHEUS_MULTIPROC_DIR", raising=False)
    else:
        monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", value)
    folder, owned = metrics_folder()
    try:
        assert owned
        assert Path(folder).is_dir()
        assert Path(folder).name.startswith(OWNED_PREFIX)
    finally:
        shutil.rmtree(folder)


def test_only_folders_of_dead_supervisors_are_removed(tmp_path: Path) -> None:
    dead = tmp_path / f"{OWNED_PREFIX}{dead_pid()}-abc"
    live = tmp_path / f"{OWNED_PREFIX}{os.getpid()}-abc"
    other = tmp_path / "someone-else-1-abc"
    for folder in (dead, live, other):
        folder.mkdir()
    assert remove_dead_owned_dirs(tmp_path) == [dead]
    assert live.is_dir()
    assert other.is_dir()
