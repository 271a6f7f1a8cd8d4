"""The refused-bodies pages with sealed bodies (pure): opened with the key, or a clear
"no longer readable" once the hour's key is gone, never a traceback."""

from datetime import UTC, datetime

from console.kafka_view import Found
from console.refused import NO_MASTER_KEY, kept_body, shown
from console.routes_rejected import verdict
from spakinect_pipeline.phi.kafka_keys import DataKey, new_data_key
from spakinect_pipeline.phi.unparsed import SEALED_HEADER, Lookup, epoch_subject, seal_body

NOW = datetime(2026, 12, 7, 18, tzinfo=UTC)
BODY = b'{"event": "visit.completed", "data": {"gfe_id": "gfe_1"}, "name": "Jane Smith"}'


def found(value: bytes, headers: list[tuple[str, bytes]]) -> Found:
    return Found(
        "rejected", 0, 7, NOW, {k: v.decode() for k, v in headers}, value, None, tuple(headers)
    )


def keys(*known: DataKey) -> Lookup:
    by_ref = {(k.subject, k.key_id): k for k in known}
    return lambda subject, key_id: by_ref.get((subject, key_id))


def test_a_sealed_refused_body_opens_for_the_list_and_the_verdict() -> None:
    key = new_data_key(epoch_subject(NOW))
    value, ref = seal_body(BODY, key)
    kept = found(value, [("reason", b"wrong_event"), (SEALED_HEADER, ref.encode())])
    assert kept_body(kept.value or b"", kept.raw_headers, keys(key)) == BODY
    assert shown(BODY, "", 0).entity == "gfe_1"
    assert verdict(kept, 1714675200000, keys(key)).startswith("still refused")


def test_a_sealed_body_whose_key_is_gone_says_so() -> None:
    key = new_data_key(epoch_subject(NOW))
    value, ref = seal_body(BODY, key)
    kept = found(value, [(SEALED_HEADER, ref.encode())])
    assert verdict(kept, 0, keys()).startswith("no longer readable")
    assert verdict(kept, 0, None) == NO_MASTER_KEY
    assert "Jane" not in verdict(kept, 0, keys())


def test_a_body_kept_before_sealing_reads_as_before() -> None:
    assert kept_body(BODY, [("reason", b"schema")], None) == BODY
