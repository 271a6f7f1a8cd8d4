"""The wheel is the runtime alone, and its CLI runs from a fresh venv (offline, no checkout)."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
import trustme

ROOT = Path(__file__).resolve().parents[2]
RUNTIME = {"events", "ingress", "streams", "sinks", "spakinect_pipeline", "cli", "console"}
SECRET = "Sc-ram-Pa55-for-test"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        timeout=180,
    )
    (built,) = out.glob("spakinect_pipeline-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new venv holding the wheel; its dependencies come from this venv's site-packages.

    A path line in a .pth file adds the directory without running the .pth
    files in it, so this checkout's editable install is not seen.
    """
    venv = tmp_path_factory.mktemp("venv") / "v"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(site, "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(python),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        timeout=180,
    )
    return venv


def run(venv: Path, *args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    clean = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(cwd), **env}
    return subprocess.run(
        [str(venv / "bin" / "spakinect-pipeline"), *args],
        env=clean,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_wheel_holds_the_runtime_and_its_data_files_only(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == RUNTIME
    for data in (
        "sinks/postgres/migrations/0001_init.sql",
        "sinks/email/templates/clinic_visit.txt.j2",
        "console/templates/base.html",
        "console/static/console.css",
    ):
        assert data in names


def test_the_installed_cli_runs_and_checks_a_stage_without_a_checkout(installed, tmp_path):
    help_text = run(installed, "--help", env={}, cwd=tmp_path)
    assert help_text.returncode == 0, help_text.stderr
    assert "check-config" in help_text.stdout

    where = subprocess.run(
        [
            str(installed / "bin" / "python"),
            "-c",
            "import cli, importlib.util as u; print(cli.__file__); print(u.find_spec('devstack'))",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert where[0].startswith(str(installed))  # the wheel's copy, not this checkout
    assert where[1] == "None"  # the harnesses are not installed

    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": "kafka.example.test:9093",  # never contacted
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "svc-pipeline",
        "KAFKA_SASL_PASSWORD": SECRET,
        "KAFKA_SSL_CAFILE": str(tmp_path / "ca.pem"),
        "STREAMS_STATE_DIR": str(tmp_path / "state"),
    }
    ok = run(installed, "check-config", "dedupe", env=env, cwd=tmp_path)
    assert ok.returncode == 0, ok.stderr
    assert "dedupe: settings valid" in ok.stdout
    assert "SASL_SSL" in ok.stdout
    assert "SCRAM-SHA-512" in ok.stdout
    assert SECRET not in ok.stdout + ok.stderr

    half_set = {k: v for k, v in env.items() if k != "KAFKA_SASL_MECHANISM"}
    refused = run(installed, "check-config", "dedupe", env=half_set, cwd=tmp_path)
    assert refused.returncode == 2
    assert "KAFKA_SASL_MECHANISM: required when KAFKA_SECURITY_PROTOCOL is SASL" in refused.stderr
    assert SECRET not in refused.stdout + refused.stderr

    no_keys = run(installed, "check-config", "postgres", env=env, cwd=tmp_path)
    assert no_keys.returncode == 2
    assert "PHI_ENCRYPTION_KEYS is required" in no_keys.stderr


def test_the_runtime_never_reads_the_checkouts_data_folder():
    """`.data/` is `make up`'s; the installed code may name it in help, never open it.

    (A worker's own table state defaults to ``.data/state`` under its working
    directory: a place it writes, not the checkout's settings.)
    """
    offenders = []
    for package in sorted(RUNTIME):
        for path in (ROOT / package).rglob("*.py"):
            for number, line in enumerate(path.read_text().splitlines(), 1):
                opens = "Path(" in line or "open(" in line
                if ".data/" in line and opens and ".data/state" not in line:
                    offenders.append(f"{path.relative_to(ROOT)}:{number}")
    assert offenders == []


def test_make_cli_exports_the_local_stack_and_its_keys():
    """`make cli` sources .data/stack.env and .data/phi.env for the one command (dry run)."""
    dry = subprocess.run(
        ["make", "-n", "cli", "ARGS=phi forget --gfe-id gfe_1"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert ". ./$f" in dry
    assert ".data/stack.env .data/phi.env" in dry
    assert "spakinect-pipeline phi forget --gfe-id gfe_1" in dry
