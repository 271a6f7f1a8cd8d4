import faust
from pydantic import SecretStr

from spakinect_pipeline.config import KafkaSettings
from streams.faust_app import broker_credentials


def test_plaintext_needs_no_credentials():
    assert broker_credentials(KafkaSettings()) is None


def test_sasl_settings_become_faust_credentials():
    kafka = KafkaSettings(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="svc",
        sasl_password=SecretStr("pw"),
    )
    credentials = broker_credentials(kafka)
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password) == ("svc", "pw")
    assert credentials.mechanism.value == "SCRAM-SHA-512"
