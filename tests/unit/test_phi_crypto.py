"""The patient-field crypto: AES-GCM round trips, key rotation, contexts, blind indexes."""

import base64

import pytest

from spakinect_pipeline.config import ConfigError
from spakinect_pipeline.phi.crypto import (
    BlindIndex,
    Keyring,
    PhiDecryptError,
    PhiKeyError,
    is_ciphertext,
    keyring_from,
    new_key_entry,
    parse_keys,
)
from spakinect_pipeline.phi.settings import PhiSettings

OLD, NEW, INDEX = new_key_entry("k1"), new_key_entry("k2"), new_key_entry().split(":", 1)[1]


def test_round_trip_is_versioned_with_the_key_id_and_fresh_nonces():
    ring = keyring_from(NEW, INDEX)
    first = ring.encrypt("Jane Smith", "gfe_visits.patient_name:gfe_1")
    second = ring.encrypt("Jane Smith", "gfe_visits.patient_name:gfe_1")
    assert first.startswith("phi1:k2:")
    assert is_ciphertext(first)
    assert first != second  # a new nonce each time: equal names don't show as equal
    assert "Jane" not in first
    assert ring.decrypt(first, "gfe_visits.patient_name:gfe_1") == "Jane Smith"


def test_a_ciphertext_moved_to_another_row_or_column_does_not_open():
    ring = keyring_from(NEW, INDEX)
    sealed = ring.encrypt("jane@example.com", "gfe_visits.patient_email:gfe_1")
    with pytest.raises(PhiDecryptError):
        ring.decrypt(sealed, "gfe_visits.patient_email:gfe_2")
    with pytest.raises(PhiDecryptError):
        ring.decrypt(sealed, "gfe_visits.patient_name:gfe_1")


def test_tampered_or_foreign_ciphertexts_fail_without_quoting_data():
    ring = keyring_from(NEW, INDEX)
    sealed = ring.encrypt("Jane", "c")
    flipped = sealed[:-2] + ("A" if sealed[-2] != "A" else "B") + sealed[-1]
    for bad in (flipped, "phi1:k2:", "plain text", "phi9:k2:abcd"):
        with pytest.raises(PhiDecryptError) as info:
            ring.decrypt(bad, "c")
        assert "Jane" not in str(info.value)


def test_rotation_old_rows_open_while_the_old_key_is_listed_then_not():
    old_ring = keyring_from(OLD, INDEX)
    sealed = old_ring.encrypt("Jane", "c")
    both = keyring_from(f"{NEW},{OLD}", INDEX)
    assert both.current_id == "k2"
    assert both.decrypt(sealed, "c") == "Jane"
    assert both.encrypt("Jane", "c").startswith(both.current_prefix)
    with pytest.raises(PhiDecryptError, match="k1 is not in PHI_ENCRYPTION_KEYS"):
        keyring_from(NEW, INDEX).decrypt(sealed, "c")


def test_blind_index_is_keyed_normalized_and_separates_kinds():
    index = BlindIndex(base64.b64decode(INDEX))
    assert index.email_index(" Jane.Smith@Example.com ") == index.email_index(
        "jane.smith@example.com"
    )
    assert index.email_index("a@b.c") != index.gfe_marker("a@b.c")
    other = BlindIndex(b"\x01" * 32)
    assert other.email_index("a@b.c") != index.email_index("a@b.c")
    assert "a@b.c" not in index.email_index("a@b.c")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no key"),
        ("k1", "expected <key id>:<base64 key>"),
        ("bad id!:AAAA", "expected <key id>"),
        ("k1:%%%", "not base64"),
        ("k1:" + base64.b64encode(b"short").decode(), "32 bytes"),
        (f"{NEW},{NEW}", "appears twice"),
    ],
)
def test_malformed_keys_are_refused_without_echoing_them(text, message):
    with pytest.raises(PhiKeyError, match=message) as info:
        parse_keys(text)
    material = text.partition(":")[2]
    if len(material) > 4:
        assert material not in str(info.value)


def test_settings_require_both_keys_and_name_the_variable():
    with pytest.raises(ConfigError, match="PHI_ENCRYPTION_KEYS is required"):
        PhiSettings(_env_file=None).keyring()
    with pytest.raises(ConfigError, match="PHI_INDEX_KEY is required"):
        PhiSettings(_env_file=None, encryption_keys=NEW).keyring()
    with pytest.raises(ConfigError, match="PHI_ENCRYPTION_KEYS: entry 1") as info:
        PhiSettings(_env_file=None, encryption_keys="k1:AAAA", index_key=INDEX).keyring()
    assert "AAAA" not in str(info.value)
    ring = PhiSettings(_env_file=None, encryption_keys=f"{NEW},{OLD}", index_key=INDEX).keyring()
    assert isinstance(ring, Keyring)
    assert ring.current_id == "k2"
    assert base64.b64encode(ring.keys[0][1]).decode() not in repr(ring)


def test_retention_reads_durations_like_other_settings():
    assert PhiSettings(_env_file=None, retention="90d").retention == 90 * 86400
    assert PhiSettings(_env_file=None).retention is None


def test_copies_name_each_patient_topic_and_when_its_copies_are_gone():
    from datetime import UTC, datetime

    from events.topics import Topics
    from spakinect_pipeline.config import KafkaSettings
    from spakinect_pipeline.phi.copies import TopicCopy, copies_lines, patient_topics
    from spakinect_pipeline.topic_admin import retention_config

    topics = Topics("p.")
    assert set(patient_topics(topics)) == {
        "p.visit-completed", "p.unrouted", "p.rejected", "p.visits", "p.dlq",
        "p.retry.postgres", "p.retry.email",
    }  # fmt: skip
    kafka = KafkaSettings(_env_file=None, retention_ms=2 * 86_400_000)
    assert retention_config(kafka) == {"retention.ms": "172800000", "segment.ms": "86400000"}
    now = datetime(2026, 1, 1, tzinfo=UTC)
    lines = list(
        copies_lines(
            [TopicCopy("p.dlq", 2 * 86_400_000, 86_400_000, "broker"),
             TopicCopy("p.visits", -1, 86_400_000, "config")],
            now,
        )
    )  # fmt: skip
    assert "  kafka topic p.dlq: until 2026-01-04T00:00+00:00 at the latest" in lines[1]
    assert "no time limit" in lines[2]
    assert any("clinic's inbox" in line for line in lines)
