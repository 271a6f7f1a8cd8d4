"""What a forget destroys on Kafka, and what verify-forgotten flags (pure parts)."""

from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.phi.crypto import BlindIndex, new_key_entry, parse_key
from spakinect_pipeline.phi.key_store import KEY_TOPIC_CONFIG
from spakinect_pipeline.phi.shredding import Verification, subjects_of, verification_lines

INDEX = BlindIndex(parse_key(new_key_entry().split(":", 1)[1], "value"))


def test_a_patients_subjects_are_the_email_index_and_each_gfe_marker_never_the_email():
    subjects = subjects_of(INDEX, "Jane@Example.com", ["gfe_b", "gfe_a", "gfe_a"])
    assert subjects == [
        INDEX.email_index("jane@example.com"),
        INDEX.gfe_marker("gfe_a"),
        INDEX.gfe_marker("gfe_b"),
    ]
    assert all("@" not in s for s in subjects)
    assert subjects_of(INDEX, None, ["gfe_a"]) == [INDEX.gfe_marker("gfe_a")]


def test_verification_names_live_keys_and_settings_that_break_the_bound():
    good = Verification([], dict(KEY_TOPIC_CONFIG))
    assert good.problems() == []
    bad = Verification(["k1:abc:01"], {**KEY_TOPIC_CONFIG, "cleanup.policy": "delete"})
    assert bad.problems() == ["cleanup.policy=delete (expected compact)"]
    lines = list(verification_lines(KafkaSettings(topic_prefix="p."), bad))
    assert lines[0] == "key topic p.phi-keys: 1 live key record(s) for the patient"
    assert "  live: k1:abc:01" in lines
    assert any("warning: cleanup.policy=delete" in line for line in lines)
