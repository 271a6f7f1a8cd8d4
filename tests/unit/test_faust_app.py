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


def test_stage_apps_use_the_strict_consumer_and_the_faust_hooks_it_overrides_exist(tmp_path):
    from faust.transport.drivers import aiokafka as faust_aiokafka

    from streams.faust_app import create_faust_app
    from streams.faust_consumer import RewindingConsumerThread, StrictConsumer
    from streams.settings import StreamsSettings

    streams = StreamsSettings(store="memory", state_dir=tmp_path)
    app = create_faust_app("dedupe", streams, KafkaSettings())
    assert app.transport.Consumer is StrictConsumer
    # A Faust upgrade that renames what we override must fail here, not lose events.
    for name in ("_new_offset", "_add_gap", "commit", "_new_consumer_thread", "seek_wait"):
        assert callable(getattr(faust_aiokafka.Consumer, name))
    assert callable(faust_aiokafka.AIOKafkaConsumerThread.seek_to_committed)
    assert RewindingConsumerThread.seek_to_committed is not (
        faust_aiokafka.AIOKafkaConsumerThread.seek_to_committed
    )
