"""Kafka security settings: every protocol, one rule set for aiokafka and Faust, clear refusals."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import trustme
from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

from spakinect_pipeline.config import ConfigError, KafkaSettings, load_settings
from streams.faust_app import broker_credentials

SECRET = "s3cr3t-Pa55word"
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A private CA, a client certificate and key, and files that are not what they claim."""
    folder = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    client = ca.issue_cert("svc-pipeline@example.test")
    other = trustme.CA().issue_cert("someone-else@example.test")
    files = {
        "ca": folder / "ca.pem",
        "cert": folder / "client.pem",
        "key": folder / "client.key",
        "both": folder / "client-and-key.pem",
        "other_key": folder / "other.key",
        "garbage": folder / "garbage.pem",
    }
    ca.cert_pem.write_to_path(str(files["ca"]))
    client.cert_chain_pems[0].write_to_path(str(files["cert"]))
    client.private_key_pem.write_to_path(str(files["key"]))
    client.private_key_and_cert_chain_pem.write_to_path(str(files["both"]))
    other.private_key_pem.write_to_path(str(files["other_key"]))
    files["garbage"].write_text(
        "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n"
    )
    return files


def _combinations() -> list[dict[str, str]]:
    combos: list[dict[str, str]] = [{"security_protocol": "PLAINTEXT"}]
    for protocol in ("SSL", "SASL_SSL", "SASL_PLAINTEXT"):
        mechanisms = MECHANISMS if protocol.startswith("SASL") else (None,)
        tls_choices = (
            (
                "system CAs",
                "private CA",
                "private CA + client cert",
                "private CA, cert+key in one file",
            )
            if protocol != "SASL_PLAINTEXT"
            else ("none",)
        )
        for mechanism, tls in itertools.product(mechanisms, tls_choices):
            combo = {"security_protocol": protocol, "tls": tls}
            if mechanism:
                combo |= {"sasl_mechanism": mechanism, "sasl_username": "svc-pipeline"}
            combos.append(combo)
    return combos


def _settings(combo: dict[str, str], pki: dict[str, Path]) -> KafkaSettings:
    fields: dict[str, object] = {k: v for k, v in combo.items() if k != "tls"}
    if "sasl_mechanism" in combo:
        fields["sasl_password"] = SECRET
    tls = combo.get("tls", "")
    if "private CA" in tls or "one file" in tls:
        fields["ssl_cafile"] = str(pki["ca"])
    if "client cert" in tls:
        fields |= {"ssl_certfile": str(pki["cert"]), "ssl_keyfile": str(pki["key"])}
    if "one file" in tls:
        fields["ssl_certfile"] = str(pki["both"])
    return load_settings(KafkaSettings, **fields)


@pytest.mark.parametrize(
    "combo",
    _combinations(),
    ids=lambda c: "-".join(v for k, v in c.items() if k != "sasl_username"),
)
def test_aiokafka_and_faust_get_the_same_security(combo, pki):
    kafka = _settings(combo, pki)
    ours = kafka.client_options()
    faust_side = credentials_to_aiokafka_auth(broker_credentials(kafka))

    assert (
        faust_side["security_protocol"] == ours["security_protocol"] == combo["security_protocol"]
    )
    for key in ("sasl_mechanism", "sasl_plain_username", "sasl_plain_password"):
        assert faust_side.get(key) == ours.get(key)
    if "sasl_mechanism" in combo:
        assert ours["sasl_mechanism"] == combo["sasl_mechanism"]
        assert ours["sasl_plain_password"] == SECRET

    contexts = [ours.get("ssl_context"), faust_side.get("ssl_context")]
    if combo["security_protocol"] in ("SSL", "SASL_SSL"):
        ca_subjects = [{c["subject"] for c in ctx.get_ca_certs()} for ctx in contexts]
        assert ca_subjects[0] == ca_subjects[1]
        private = any("trustme" in str(s) for s in ca_subjects[0])
        assert private == ("CA" in combo["tls"] and "system" not in combo["tls"])
        assert all(ctx.check_hostname for ctx in contexts)
    else:
        assert contexts == [None, None]


@pytest.mark.parametrize("protocol", ["SASL_SSL", "SASL_PLAINTEXT"])
@pytest.mark.parametrize(
    ("missing", "variable"),
    [
        ("sasl_mechanism", "KAFKA_SASL_MECHANISM"),
        ("sasl_username", "KAFKA_SASL_USERNAME"),
        ("sasl_password", "KAFKA_SASL_PASSWORD"),
    ],
)
def test_sasl_without_each_of_its_settings_is_refused_naming_it(
    monkeypatch, protocol, missing, variable
):
    env = {
        "KAFKA_SECURITY_PROTOCOL": protocol,
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "svc-pipeline",
        "KAFKA_SASL_PASSWORD": SECRET,
    }
    env.pop(variable)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings(KafkaSettings)
    message = str(info.value)
    assert f"{variable}: required when KAFKA_SECURITY_PROTOCOL is SASL" in message
    assert [
        n
        for n in ("KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD")
        if n in message
    ] == [variable]
    assert SECRET not in message


def test_an_empty_password_counts_as_missing(monkeypatch):
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("KAFKA_SASL_USERNAME", "svc")
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", "")
    with pytest.raises(ConfigError, match="KAFKA_SASL_PASSWORD: required"):
        load_settings(KafkaSettings)


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SSL"])
def test_sasl_settings_without_a_sasl_protocol_are_refused(monkeypatch, protocol):
    """The half-set protocol the other way: credentials that would silently go unused."""
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", protocol)
    monkeypatch.setenv("KAFKA_SASL_PASSWORD", SECRET)
    with pytest.raises(ConfigError) as info:
        load_settings(KafkaSettings)
    assert "KAFKA_SASL_PASSWORD: set, but KAFKA_SECURITY_PROTOCOL is not SASL" in str(info.value)
    assert SECRET not in str(info.value)


@pytest.mark.parametrize("protocol", ["PLAINTEXT", "SASL_PLAINTEXT"])
def test_tls_files_without_a_tls_protocol_are_refused(protocol, pki):
    sasl = (
        {"sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password": "p"}
        if protocol.startswith("SASL")
        else {}
    )
    with pytest.raises(ConfigError, match="KAFKA_SSL_CAFILE: set, but KAFKA_SECURITY_PROTOCOL"):
        load_settings(KafkaSettings, security_protocol=protocol, ssl_cafile=str(pki["ca"]), **sasl)


def test_an_unknown_mechanism_or_protocol_names_the_variable(monkeypatch):
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("KAFKA_SASL_MECHANISM", "SCRAM-SHA-1")
    with pytest.raises(ConfigError, match="KAFKA_SASL_MECHANISM"):
        load_settings(KafkaSettings)
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "TLS")
    with pytest.raises(ConfigError, match="KAFKA_SECURITY_PROTOCOL"):
        load_settings(KafkaSettings)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"ssl_cafile": "missing"}, "KAFKA_SSL_CAFILE: cannot read the file (FileNotFoundError)"),
        ({"ssl_cafile": "garbage"}, "KAFKA_SSL_CAFILE: not a PEM bundle of CA certificates"),
        ({"ssl_keyfile": "key"}, "KAFKA_SSL_KEYFILE: set without KAFKA_SSL_CERTFILE"),
        (
            {"ssl_certfile": "cert"},  # the key is neither in the file nor given
            "KAFKA_SSL_CERTFILE: not a PEM client certificate with its private key",
        ),
        (
            {"ssl_certfile": "cert", "ssl_keyfile": "other_key"},
            "KAFKA_SSL_CERTFILE/KAFKA_SSL_KEYFILE: not a PEM client certificate with its",
        ),
        (
            {"ssl_certfile": "cert", "ssl_keyfile": "missing"},
            "KAFKA_SSL_CERTFILE/KAFKA_SSL_KEYFILE: cannot read the file",
        ),
    ],
)
def test_unusable_tls_files_are_refused_naming_the_setting_not_the_path(files, expected, pki):
    paths = {
        field: str(pki[which]) if which in pki else str(pki["ca"].parent / "nope.pem")
        for field, which in files.items()
    }
    with pytest.raises(ConfigError) as info:
        load_settings(KafkaSettings, security_protocol="SSL", **paths)
    assert expected in str(info.value)
    assert str(pki["ca"].parent) not in str(info.value)


def test_every_problem_is_reported_at_once(monkeypatch):
    monkeypatch.setenv("KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    with pytest.raises(ConfigError) as info:
        load_settings(KafkaSettings)
    for name in ("KAFKA_SASL_MECHANISM", "KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD"):
        assert name in str(info.value)
