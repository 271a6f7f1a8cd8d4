"""aiokafka's failures read as an operator needs them: what happened, which setting to check."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import trustme
from aiokafka.errors import (
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
    KafkaConnectionError,
    RequestTimedOutError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    UnsupportedSaslMechanismError,
)

from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.kafka_problems import (
    KafkaRefused,
    classify,
    refused,
    underlying_error,
    wrong_setting_error,
)
from spakinect_pipeline.publisher import KafkaPublisher, PublishFailed
from tests.tls_handshake import handshake_error

SECRET = "hunter2-Secret"
BROKER_TEXT = (
    "Authentication failed during authentication due to invalid credentials with SASL "
    f"mechanism SCRAM-SHA-256 {SECRET}"  # never echoed, whatever a broker puts here
)


def _bootstrap_failure_from(cause: BaseException) -> KafkaConnectionError:
    try:
        try:
            raise cause
        except BaseException as exc:
            raise KafkaConnectionError("Unable to bootstrap from [('b', 9093, 2)]") from exc
    except KafkaConnectionError as wrapped:
        return wrapped


def test_a_refused_password_is_authentication_failed_naming_the_settings():
    for exc in (
        SaslAuthenticationFailed(BROKER_TEXT),
        _bootstrap_failure_from(SaslAuthenticationFailed(BROKER_TEXT)),
    ):
        problem = classify(exc)
        text = str(problem)
        assert text.startswith("Kafka authentication failed")
        assert "check KAFKA_SASL_USERNAME, KAFKA_SASL_PASSWORD" in text
        assert "KafkaConnectionError" not in text
        assert SECRET not in text
        assert problem.settings_wrong


def test_an_untrusted_certificate_says_so_naming_the_ca_setting():
    error = handshake_error(trustme.CA(), trustme.CA(), "broker.example.test")
    assert isinstance(error, ssl.SSLCertVerificationError)
    text = str(classify(_bootstrap_failure_from(error)))
    assert text.startswith("Kafka certificate not trusted")
    assert "check KAFKA_SSL_CAFILE" in text


def test_a_certificate_for_another_name_points_at_the_bootstrap_servers():
    ca = trustme.CA()
    text = str(classify(handshake_error(ca, ca, "kafka.elsewhere.test")))
    assert text.startswith("Kafka certificate does not match the broker's address")
    assert "Hostname mismatch" in text
    assert "check KAFKA_BOOTSTRAP_SERVERS" in text


@pytest.mark.parametrize(
    ("exc", "start", "setting", "wrong"),
    [
        (UnsupportedSaslMechanismError("no"), "Kafka does not accept this SASL", "MECHANISM", 1),
        (IllegalSaslStateError(), "Kafka listener does not expect SASL", "PROTOCOL", 1),
        (TopicAuthorizationFailedError(), "Kafka refused the operation: not authorized", "ACLs", 1),
        (GroupAuthorizationFailedError(), "Kafka refused the operation: not authorized", "ACLs", 1),
        (ssl.SSLError(1, "[SSL] wrong version"), "Kafka TLS handshake failed", "PROTOCOL", 1),
        (KafkaConnectionError("Unable to bootstrap"), "Kafka not reachable", "BOOTSTRAP", 0),
        (ConnectionRefusedError(111, "refused"), "Kafka not reachable", "BOOTSTRAP", 0),
        (TimeoutError(), "Kafka did not answer in time", "BOOTSTRAP", 0),
        (RequestTimedOutError(), "Kafka did not answer in time", "BOOTSTRAP", 0),
    ],
)
def test_each_failure_names_what_to_check(exc, start, setting, wrong):
    problem = classify(exc)
    assert str(problem).startswith(start)
    assert any(setting in item for item in problem.check)
    assert problem.settings_wrong is bool(wrong)
    assert isinstance(refused(exc), KafkaRefused) is bool(wrong)


@pytest.fixture
async def tls_listener(tmp_path: Path) -> AsyncIterator[tuple[int, Path, Path]]:
    """A TLS server on a free port (certificate for 127.0.0.1); its CA and a stranger CA."""
    ca, stranger = trustme.CA(), trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    ca.cert_pem.write_to_path(str(tmp_path / "right.pem"))
    stranger.cert_pem.write_to_path(str(tmp_path / "wrong.pem"))

    async def close(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(close, "127.0.0.1", 0, ssl=server_ctx)
    port = server.sockets[0].getsockname()[1]
    yield port, tmp_path / "right.pem", tmp_path / "wrong.pem"
    server.close()


async def test_a_real_connection_with_the_wrong_ca_is_diagnosed(tls_listener):
    port, _right, wrong = tls_listener
    kafka = KafkaSettings(
        bootstrap_servers=[f"127.0.0.1:{port}"], security_protocol="SSL", ssl_cafile=str(wrong)
    )
    found = await wrong_setting_error(kafka)
    assert isinstance(found, ssl.SSLCertVerificationError)
    bare = KafkaConnectionError("Unable to bootstrap")
    assert str(classify(await underlying_error(bare, kafka))).startswith(
        "Kafka certificate not trusted"
    )


async def test_a_right_ca_or_a_closed_port_is_no_wrong_setting(tls_listener, unused_tcp_port):
    port, right, _wrong = tls_listener
    trusted = KafkaSettings(
        bootstrap_servers=[f"127.0.0.1:{port}"], security_protocol="SSL", ssl_cafile=str(right)
    )
    assert await wrong_setting_error(trusted, timeout=2) is None  # TLS passed; Kafka did not
    closed = KafkaSettings(bootstrap_servers=[f"127.0.0.1:{unused_tcp_port}"])
    bare = KafkaConnectionError("Unable to bootstrap")
    assert await underlying_error(bare, closed) is bare


async def test_the_publisher_says_certificate_not_trusted_not_connection_error(
    tls_listener, caplog
):
    port, _right, wrong = tls_listener
    kafka = KafkaSettings(
        bootstrap_servers=[f"127.0.0.1:{port}"], security_protocol="SSL", ssl_cafile=str(wrong)
    )
    publisher = KafkaPublisher(kafka, client_id="test", request_timeout_ms=4000)
    with caplog.at_level(logging.WARNING, logger="spakinect_pipeline.publisher"):
        await publisher.start()
    assert "Kafka certificate not trusted" in caplog.text
    assert "cannot connect at start-up, will keep trying: Kafka certificate" in caplog.text
    with pytest.raises(PublishFailed) as info:
        await publisher.publish("t", b"v", key=None, timeout=3)
    assert str(info.value).startswith("Kafka certificate not trusted")
    assert "check KAFKA_SSL_CAFILE" in str(info.value)
    await publisher.stop()


@pytest.mark.parametrize("stage", ["dedupe", "postgres"])  # with changelog tables, without
async def test_a_worker_stops_at_once_on_a_wrong_ca_naming_the_setting(
    stage, tls_listener, monkeypatch, tmp_path, caplog
):
    from devstack.phi_keys import new_phi_env
    from streams.faust_app import prepare_changelogs
    from streams.worker import build_stage

    port, _right, wrong = tls_listener
    for name, value in {
        "KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
        "KAFKA_SECURITY_PROTOCOL": "SSL",
        "KAFKA_SSL_CAFILE": str(wrong),
        "STREAMS_STORE": "memory",
        "STREAMS_STATE_DIR": str(tmp_path),
        "POSTGRES_DSN": "postgresql://u@127.0.0.1:1/db",
        **new_phi_env(),
    }.items():
        monkeypatch.setenv(name, value)
    app = build_stage(stage)
    kafka = KafkaSettings()
    started = asyncio.get_running_loop().time()
    with caplog.at_level(logging.ERROR), pytest.raises(KafkaRefused) as info:
        await prepare_changelogs(app, kafka, 60, timeout=30)
    assert asyncio.get_running_loop().time() - started < 10  # not the 120 s of retries
    assert str(info.value).startswith("Kafka certificate not trusted")
    assert "KAFKA_SSL_CAFILE" in str(info.value)
    assert "the worker cannot start" in caplog.text
