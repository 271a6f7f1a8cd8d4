"""asyncpg's connection failures read as an operator needs them: what is wrong, which part of
POSTGRES_DSN to check, never the DSN's values."""

from __future__ import annotations

import logging
import ssl

import asyncpg
import pytest
import trustme

from devstack.phi_keys import new_phi_env
from sinks.base import RetryableError
from sinks.postgres.writer import PostgresSink
from sinks.postgres.writer import classify as writer_classify
from spakinect_pipeline.phi.crypto import keyring_from
from spakinect_pipeline.postgres_problems import classify
from tests.tls_handshake import handshake_error

SECRET = "hunter2-Secret"


def _server_error(cls: type[asyncpg.PostgresError], message: str) -> asyncpg.PostgresError:
    return cls(message)


def test_an_untrusted_server_certificate_names_the_dsn_sslrootcert() -> None:
    error = handshake_error(trustme.CA(), trustme.CA(), "db.example.test", "db.example.test")
    assert isinstance(error, ssl.SSLCertVerificationError)
    problem = classify(error)
    assert problem is not None
    assert problem.settings_wrong
    text = str(problem)
    assert text.startswith("Postgres certificate not trusted (unable to get local issuer")
    assert "check POSTGRES_DSN's sslrootcert" in text


def test_a_certificate_for_another_name_points_at_the_dsn_host() -> None:
    ca = trustme.CA()
    text = str(classify(handshake_error(ca, ca, "db.elsewhere.test", "db.example.test")))
    assert text.startswith("Postgres certificate does not match the server's address")
    assert "Hostname mismatch" in text
    assert "check POSTGRES_DSN's host" in text


def test_a_plaintext_connection_refused_by_a_tls_only_server_says_tls_is_required() -> None:
    error = _server_error(
        asyncpg.InvalidAuthorizationSpecificationError,
        f'no pg_hba.conf entry for host "127.0.0.1", user "{SECRET}", database "d", no encryption',
    )
    text = str(classify(error))
    assert text.startswith("Postgres refused a connection without TLS")
    assert "check POSTGRES_DSN's sslmode" in text
    assert SECRET not in text


def test_other_refusals_are_told_apart() -> None:
    cases = {
        "refused this client (no pg_hba.conf entry)": _server_error(
            asyncpg.InvalidAuthorizationSpecificationError,
            'no pg_hba.conf entry for host "10.0.0.9", user "u", database "d", SSL encryption',
        ),
        "authentication failed (password refused): check POSTGRES_DSN's user and password": (
            _server_error(asyncpg.InvalidPasswordError, f'password failed for user "{SECRET}"')
        ),
        "database does not exist": _server_error(
            asyncpg.InvalidCatalogNameError, f'database "{SECRET}" does not exist'
        ),
        "does not offer TLS": ConnectionError("PostgreSQL server at x rejected SSL upgrade"),
        "TLS settings unusable (no CA file given, and the default one is missing)": (
            asyncpg.exceptions.ClientConfigurationError(
                'root certificate file "/root/.postgresql/root.crt" does not exist'
            )
        ),
        "TLS files cannot be read (FileNotFoundError)": FileNotFoundError(2, "No such file"),
        "not reachable (ConnectionRefusedError)": ConnectionRefusedError(111, "refused"),
    }
    for expected, error in cases.items():
        text = str(classify(error))
        assert text.startswith(f"Postgres {expected}"), text
        assert SECRET not in text
    unreachable = classify(ConnectionRefusedError(111, "refused"))
    assert unreachable is not None
    assert not unreachable.settings_wrong


def test_a_cause_is_found_and_other_errors_are_not_connection_problems() -> None:
    wrapped = RuntimeError("pool start failed")
    wrapped.__cause__ = handshake_error(
        trustme.CA(), trustme.CA(), "db.example.test", "db.example.test"
    )
    assert str(classify(wrapped)).startswith("Postgres certificate not trusted")
    assert classify(asyncpg.UniqueViolationError("duplicate key")) is None
    assert classify(ValueError("x")) is None


def test_the_writer_says_it_in_its_retryable_error() -> None:
    error = handshake_error(trustme.CA(), trustme.CA(), "db.example.test", "db.example.test")
    said = writer_classify(error)
    assert isinstance(said, RetryableError)
    assert str(said).startswith("Postgres certificate not trusted")
    duplicate = writer_classify(asyncpg.UniqueViolationError("duplicate key"))
    assert str(duplicate) == "UniqueViolationError (SQLSTATE 23505)"


async def test_the_writer_start_up_line_names_the_problem_never_the_password(
    caplog: pytest.LogCaptureFixture, unused_tcp_port: int
) -> None:
    dsn = f"postgresql://app:{SECRET}@127.0.0.1:{unused_tcp_port}/db"
    env = new_phi_env()
    keyring = keyring_from(env["PHI_ENCRYPTION_KEYS"], env["PHI_INDEX_KEY"])
    sink = PostgresSink(dsn, keyring=keyring)
    with caplog.at_level(logging.WARNING):
        await sink.start()
    await sink.stop()
    lines = [r.getMessage() for r in caplog.records if r.name == "sinks.postgres.writer"]
    assert lines == [
        "postgres: cannot connect at start-up: Postgres not reachable (ConnectionRefusedError): "
        "check POSTGRES_DSN's host and port, the network; will keep trying"
    ]
    assert SECRET not in caplog.text
