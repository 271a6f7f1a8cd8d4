"""``make up UP_ARGS=--secured``: what it writes into ``stack.env`` (no service started)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from cryptography import x509

from cli.check_config import check_config
from devstack.env_file import read_env_file, write_env_file
from devstack.stack import (
    LocalServices,
    Ports,
    kafka_security,
    kafka_settings,
    shown_dsn,
    stack_env,
)

INGRESS = "http://127.0.0.1:8000"


def written(services: LocalServices, folder: Path) -> dict[str, str]:
    path = folder / "stack.env"
    write_env_file(path, stack_env(services.env(), services.phi_env, INGRESS))
    assert path.stat().st_mode & 0o777 == 0o600  # it holds passwords
    return read_env_file(path)


def test_the_secured_stack_env_names_sasl_ssl_the_ca_and_a_verify_full_dsn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    services = LocalServices(tmp_path, tmp_path / "cache", Ports.free(), secured=True)
    env = written(services, tmp_path)
    assert isinstance(services.kafka.process, type(None))  # nothing was started
    ca_file = tmp_path / "pki" / "ca.pem"
    assert {k: v for k, v in env.items() if k.startswith("KAFKA_")} == {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{services.ports.kafka}",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "spakinect-pipeline",
        "KAFKA_SASL_PASSWORD": getattr(services.kafka, "app_password", None),
        "KAFKA_SSL_CAFILE": str(ca_file),
    }
    dsn = urlsplit(env["POSTGRES_DSN"])
    assert (dsn.hostname, dsn.port, dsn.path) == (
        "127.0.0.1",
        services.ports.postgres,
        "/spakinect",
    )
    assert dsn.password is not None
    assert unquote(dsn.password) == getattr(services.postgres, "password", None)
    assert parse_qs(dsn.query) == {"sslmode": ["verify-full"], "sslrootcert": [str(ca_file)]}
    assert env["INGRESS_URL"] == INGRESS
    sourced = subprocess.run(  # as make cli and a shell of one's own read it
        [
            "bash",
            "-c",
            'set -a; . "$1"; printf %s "$POSTGRES_DSN"',
            "-",
            str(tmp_path / "stack.env"),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert sourced.stdout == env["POSTGRES_DSN"]
    assert not {"PHI_ENCRYPTION_KEYS", "PHI_INDEX_KEY"} & set(env)  # they stay in phi.env

    # One CA signed both servers' certificates, for the names in the settings (127.0.0.1).
    ca = x509.load_pem_x509_certificate(ca_file.read_bytes())
    for name in ("kafka.crt", "postgres.crt"):
        server = x509.load_pem_x509_certificate((tmp_path / "pki" / name).read_bytes())
        server.verify_directly_issued_by(ca)
        names = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert "127.0.0.1" in {str(ip) for ip in names.get_values_for_type(x509.IPAddress)}
    assert (tmp_path / "pki" / "postgres.key").stat().st_mode & 0o777 == 0o600

    # The settings pass the processes' own start-up validation (the CA file loads).
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("INGRESS_ALLOW_UNAUTHENTICATED", "true")  # as make up runs it
    assert (
        check_config("ingress")[1]
        == "kafka: SASL_SSL to 1 server(s), SASL SCRAM-SHA-512, CA from KAFKA_SSL_CAFILE"
    )
    assert kafka_settings(env).client_options()["security_protocol"] == "SASL_SSL"

    # What the banner shows names no password.
    for shown in (shown_dsn(env["POSTGRES_DSN"]), kafka_security(env)):
        assert env["KAFKA_SASL_PASSWORD"] not in shown
        assert dsn.password not in shown
    assert shown_dsn(env["POSTGRES_DSN"]).startswith(
        f"postgresql://postgres:****@127.0.0.1:{services.ports.postgres}/spakinect?sslmode="
    )


def test_a_restart_of_the_secured_stack_keeps_its_passwords_and_ca(tmp_path: Path) -> None:
    """The SCRAM users are made when Kafka's storage is formatted and the Postgres password at
    initdb: a second ``make up --secured`` on the same data must present the same ones."""
    first = written(LocalServices(tmp_path, tmp_path / "c", Ports(), secured=True), tmp_path)
    ca = (tmp_path / "pki" / "ca.pem").read_bytes()
    again = written(LocalServices(tmp_path, tmp_path / "c", Ports(), secured=True), tmp_path)
    assert again == first
    assert (tmp_path / "pki" / "ca.pem").read_bytes() == ca


def test_the_plain_stack_env_has_no_security_settings(tmp_path: Path) -> None:
    env = written(LocalServices(tmp_path, tmp_path / "cache", Ports()), tmp_path)
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == "127.0.0.1:9092"
    assert env["POSTGRES_DSN"] == "postgresql://postgres@127.0.0.1:5432/spakinect"
    assert not [k for k in env if k.startswith(("KAFKA_S", "PHI_"))]
    assert kafka_security(env) == "plaintext"
    assert shown_dsn(env["POSTGRES_DSN"]) == env["POSTGRES_DSN"]
