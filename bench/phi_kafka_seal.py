"""Cost per event of sealing a visit's patient fields for Kafka, and of opening them (one core).

``python -m bench.phi_kafka_seal [--events N]``: before (the envelope as the
ingress encodes it today) and after (blind index + seal + encode), in one run;
and one seal with the per-key cipher cache against one building its ``AESGCM``
each time (what ``seal_value`` did before the cache).
"""

from __future__ import annotations

import argparse
import time

import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from events.samples import SAMPLES
from spakinect_pipeline.phi.crypto import keyring_from, new_key_entry
from spakinect_pipeline.phi.kafka_keys import (
    cipher,
    field_context,
    new_data_key,
    open_value,
    seal_payload,
    subject_of,
)
from spakinect_pipeline.phi.paths import PATIENT


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=50_000)
    n = parser.parse_args().events
    ring = keyring_from(new_key_entry("m1"), new_key_entry().split(":", 1)[1])
    body = orjson.loads(orjson.dumps(SAMPLES["visit.completed"]))
    key = new_data_key(subject_of(body, ring.index) or "")
    event_id = "visit.completed:gfe_abc123xyz789:1714675200000"
    start = time.perf_counter()
    for _ in range(n):
        plain = orjson.dumps({"envelope_version": 1, "event_id": event_id, "payload": body})
    before = (time.perf_counter() - start) / n
    start = time.perf_counter()
    for _ in range(n):
        subject_of(body, ring.index)
        payload, sealed = seal_payload(event_id, body, key)
        value = orjson.dumps(
            {"envelope_version": 2, "event_id": event_id, "payload": payload, "sealed": sealed}
        )
    after = (time.perf_counter() - start) / n
    token = payload["data"]["patient_details"]
    start = time.perf_counter()
    for _ in range(n):
        open_value(token, key, field_context(event_id, PATIENT))
    opened = (time.perf_counter() - start) / n
    context = field_context(event_id, PATIENT).encode()
    start = time.perf_counter()
    for _ in range(n):
        cipher(key.material).encrypt(bytes(12), orjson.dumps(body), context)
    cached = (time.perf_counter() - start) / n
    start = time.perf_counter()
    for _ in range(n):
        AESGCM(key.material).encrypt(bytes(12), orjson.dumps(body), context)
    uncached = (time.perf_counter() - start) / n
    print(f"encode today: {before * 1e6:.1f} µs/event, {len(plain)} bytes")
    print(f"blind index + seal + encode: {after * 1e6:.1f} µs/event, {len(value)} bytes")
    print(f"open one sealed field: {opened * 1e6:.1f} µs")
    print(f"seal, cached cipher: {cached * 1e6:.2f} µs; AESGCM per seal: {uncached * 1e6:.2f} µs")


if __name__ == "__main__":
    main()
