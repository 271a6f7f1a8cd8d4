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
    for name in (
        "_new_offset",
        "_add_gap",
        "commit",
        "_new_consumer_thread",
        "seek_wait",
        "_to_message",
        "highwater",
    ):
        assert callable(getattr(faust_aiokafka.Consumer, name))
    assert callable(faust_aiokafka.AIOKafkaConsumerThread.seek_to_committed)
    assert RewindingConsumerThread.seek_to_committed is not (
        faust_aiokafka.AIOKafkaConsumerThread.seek_to_committed
    )


def test_the_strict_consumer_notes_timestamps_of_source_messages_only(tmp_path):
    from types import SimpleNamespace

    from faust.types import TP

    from streams.faust_app import create_faust_app
    from streams.settings import StreamsSettings

    app = create_faust_app(
        "dedupe", StreamsSettings(store="memory", state_dir=tmp_path), KafkaSettings()
    )
    consumer = app.consumer
    source, changelog = TP("spakinect.visit-completed", 0), TP("x-entities-changelog", 0)
    consumer.note_start_offsets({source: 7})
    for tp in (source, changelog):
        record = SimpleNamespace(
            topic=tp.topic,
            partition=tp.partition,
            offset=7,
            timestamp=1_000_000,
            timestamp_type=0,
            headers=[],
            key=b"k",
            value=b"v",
            checksum=None,
            serialized_key_size=1,
            serialized_value_size=1,
        )
        message = consumer._to_message(tp, record)
        assert (message.offset, message.timestamp) == (7, 1000.0)
    assert len(consumer._behind) == 1
    assert consumer._behind.seconds(source, lag=1, committed=7, now=1060.0) == 60.0


async def test_source_fetches_wait_to_gather_as_the_streams_settings_say(tmp_path):
    import inspect

    from aiokafka import AIOKafkaConsumer

    from streams.faust_app import create_faust_app
    from streams.settings import StreamsSettings

    streams = StreamsSettings(
        store="memory", state_dir=tmp_path, fetch_min_bytes=4096, fetch_max_wait_s=0.02
    )
    app = create_faust_app("dedupe", streams, KafkaSettings())
    consumer = app.consumer._thread._create_worker_consumer(app.transport)
    try:
        assert (consumer._fetch_min_bytes, consumer._fetch_max_wait_ms) == (4096, 20)
    finally:
        await consumer.stop()
    # aiokafka hands exactly these attributes to its fetcher when the consumer starts.
    start = inspect.getsource(AIOKafkaConsumer.start)
    assert "fetch_min_bytes=self._fetch_min_bytes" in start
    assert "fetch_max_wait_ms=self._fetch_max_wait_ms" in start


def test_the_monitor_skips_faust_per_message_bookkeeping(tmp_path):
    from types import SimpleNamespace

    from faust.types import TP

    from streams.faust_app import QuietMonitor, create_faust_app
    from streams.settings import StreamsSettings

    app = create_faust_app(
        "dedupe", StreamsSettings(store="memory", state_dir=tmp_path), KafkaSettings()
    )
    monitor = app.monitor
    assert isinstance(monitor, QuietMonitor)
    message = SimpleNamespace(time_in=None)
    monitor.on_message_in(TP("t", 0), 5, message)
    monitor.on_message_out(TP("t", 0), 5, message)
    assert (monitor.messages_received_total, monitor.messages_active, message.time_in) == (
        0,
        0,
        None,
    )
    monitor.on_commit_completed(app.consumer, monitor.on_commit_initiated(app.consumer))
    assert monitor.commit_latency  # what is not per message is still kept
