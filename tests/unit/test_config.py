import pytest

from ingress.settings import IngressSettings
from spakinect_pipeline.config import ConfigError, KafkaSettings, load_settings, parse_duration
from streams.settings import StreamsSettings


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("45s", 45),
        ("30m", 1800),
        ("12h", 43200),
        ("7d", 604800),
        ("90", 90),
        (12, 12),
        ("250ms", 0.25),
    ],
)
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_wrong_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("KAFKA_PARTITIONS", "many")
    with pytest.raises(ConfigError, match="KAFKA_PARTITIONS"):
        load_settings(KafkaSettings)


def test_unprefixed_names_are_reported_as_read(monkeypatch):
    monkeypatch.setenv("DEDUPE_WINDOW", "a week")
    with pytest.raises(ConfigError, match="DEDUPE_WINDOW"):
        load_settings(StreamsSettings)
    monkeypatch.setenv("DEDUPE_WINDOW", "7d")
    monkeypatch.setenv("SINKS", "postgres,fax")
    with pytest.raises(ConfigError, match="SINKS"):
        load_settings(StreamsSettings)


def test_lists_are_comma_separated(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "a:9092, b:9092")
    monkeypatch.setenv("SINKS", "email")
    assert load_settings(KafkaSettings).bootstrap_servers == ["a:9092", "b:9092"]
    assert load_settings(StreamsSettings).sinks == ["email"]


def test_ingress_refuses_to_start_without_authentication():
    with pytest.raises(ConfigError, match="INGRESS_SHARED_SECRET"):
        load_settings(IngressSettings)
    assert load_settings(IngressSettings, allow_unauthenticated=True)


def test_publish_timeout_is_capped_at_8s(monkeypatch):
    monkeypatch.setenv("INGRESS_PUBLISH_TIMEOUT_S", "9")
    with pytest.raises(ConfigError, match="INGRESS_PUBLISH_TIMEOUT_S"):
        load_settings(IngressSettings, allow_unauthenticated=True)


def test_secret_values_never_appear_in_errors(monkeypatch):
    monkeypatch.setenv("INGRESS_SHARED_SECRET", "hunter2")
    monkeypatch.setenv("INGRESS_PORT", "hunter3")
    with pytest.raises(ConfigError) as info:
        load_settings(IngressSettings)
    assert "hunter" not in str(info.value)


def test_changelog_compaction_follows_the_dedupe_window_within_bounds() -> None:
    from spakinect_pipeline.topic_admin import changelog_config

    kafka = KafkaSettings()
    assert changelog_config(kafka, 60)["segment.ms"] == "6000"
    assert changelog_config(kafka, 5)["segment.ms"] == "1000"  # at least a second
    assert changelog_config(kafka, 30 * 86400)["delete.retention.ms"] == "86400000"  # a day at most
    assert changelog_config(kafka, 60)["cleanup.policy"] == "compact"
