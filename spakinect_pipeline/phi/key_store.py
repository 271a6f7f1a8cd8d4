"""The compacted key topic: mint a data key (stored before use), read them all, destroy some.

docs/patient-data-on-kafka.md has the design. One partition, so that one
reader sees every key record in order; compaction settings bound how long a
destroyed key's old record stays in the log (``max.compaction.lag.ms`` plus
one ``segment.ms``). Record keys name a subject (a blind index or gfe marker)
and a random key id, never an email; values are wrapped under the master key.
"""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.phi.crypto import Keyring
from spakinect_pipeline.phi.kafka_keys import DataKey, new_data_key, subject_prefix, unwrap, wrap
from spakinect_pipeline.topic_admin import ensure_topics

HOUR_MS = 3_600_000
KEY_TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "min.compaction.lag.ms": "0",
    "max.compaction.lag.ms": str(HOUR_MS),  # a tombstoned key's record is compacted within 1 h
    "segment.ms": str(HOUR_MS),  # ... once its segment closed: the active one is never compacted
    "delete.retention.ms": str(24 * HOUR_MS),  # every reader sees the tombstone, then it goes
    "min.cleanable.dirty.ratio": "0.01",
}


def key_topic(prefix: str) -> str:
    return f"{prefix}phi-keys"


async def ensure_key_topic(kafka: KafkaSettings) -> list[str]:
    """Create the key topic when missing; the names created (it, or nothing)."""
    one_partition = kafka.model_copy(update={"partitions": 1})
    return await ensure_topics(one_partition, [key_topic(kafka.topic_prefix)], KEY_TOPIC_CONFIG)


async def read_records(
    kafka: KafkaSettings, after: int = -1
) -> tuple[dict[str, bytes | None], int]:
    """Key records past offset ``after`` up to the current end (last value per record key,
    None for a tombstone), and the offset of the last one read."""
    partition = TopicPartition(key_topic(kafka.topic_prefix), 0)
    consumer = AIOKafkaConsumer(**kafka.client_options(), enable_auto_commit=False)
    await consumer.start()
    records: dict[str, bytes | None] = {}
    last = after
    try:
        consumer.assign([partition])
        end = (await consumer.end_offsets([partition]))[partition]
        consumer.seek(partition, after + 1)
        while last + 1 < end:
            batch = await consumer.getmany(partition, timeout_ms=1000)
            if not batch and await consumer.position(partition) >= end:
                break  # the log's last offsets were compacted away
            for message in batch.get(partition, []):
                if message.key is not None:
                    records[message.key.decode()] = message.value
                last = message.offset
    finally:
        await consumer.stop()
    return records, last


class KeyStore:
    """Data keys by (subject, key id), read from the key topic; mints keys for the ingress."""

    def __init__(self, kafka: KafkaSettings, master: Keyring) -> None:
        self.kafka = kafka
        self.master = master
        self._records: dict[str, bytes] = {}
        self._opened: dict[str, DataKey] = {}
        self._minted: dict[str, DataKey] = {}  # subject -> the key this process seals with
        self._tombstoned: set[str] = set()  # record keys seen destroyed (a forgotten patient)
        self._position = -1

    async def refresh(self) -> None:
        """Read what was added since the last refresh; a tombstone evicts its key everywhere."""
        records, self._position = await read_records(self.kafka, self._position)
        for name, value in records.items():
            if value is None:
                self._tombstoned.add(name)
                self._records.pop(name, None)
                self._opened.pop(name, None)
                subject = name.split(":", 2)[1]
                if subject in self._minted and self._minted[subject].record_key == name:
                    del self._minted[subject]
            else:
                self._tombstoned.discard(name)
                self._records[name] = value

    def destroyed(self, subject: str, key_id: str) -> bool:
        """Whether this reader saw the key's tombstone (a key never seen is not destroyed)."""
        return f"{subject_prefix(subject)}{key_id}" in self._tombstoned

    def verify_master(self) -> bool:
        """Unwrap the newest live key record: PhiDecryptError when the master key is wrong,
        False when there is no record to check it with yet."""
        if not self._records:
            return False
        name, value = next(reversed(self._records.items()))
        unwrap(name, value, self.master)
        return True

    def get(self, subject: str, key_id: str) -> DataKey | None:
        """The data key, or None when it was destroyed (or never existed)."""
        name = f"{subject_prefix(subject)}{key_id}"
        if name not in self._opened:
            value = self._records.get(name)
            if value is None:
                return None
            self._opened[name] = unwrap(name, value, self.master)
        return self._opened[name]

    async def key_for(self, producer: AIOKafkaProducer, subject: str) -> DataKey:
        """The key to seal ``subject``'s fields with: minted and stored first when new."""
        key = self._minted.get(subject)
        if key is None:
            key = new_data_key(subject)
            value = wrap(key, self.master)
            topic = key_topic(self.kafka.topic_prefix)
            await producer.send_and_wait(topic, value, key=key.record_key.encode())
            self._minted[subject] = self._opened[key.record_key] = key
            self._records[key.record_key] = value
        return key


async def destroy(kafka: KafkaSettings, subjects: list[str]) -> list[str]:
    """Tombstone every live key of ``subjects``; the record keys destroyed (a forget)."""
    records, _ = await read_records(kafka)
    prefixes = tuple(subject_prefix(s) for s in subjects)
    doomed = [k for k, v in records.items() if v is not None and k.startswith(prefixes)]
    await tombstone(kafka, doomed)
    return doomed


async def tombstone(kafka: KafkaSettings, names: list[str]) -> None:
    """Destroy these key records (a tombstone each, acked by every in-sync replica)."""
    if not names:
        return
    producer = AIOKafkaProducer(**kafka.client_options(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for name in names:
            await producer.send_and_wait(key_topic(kafka.topic_prefix), None, key=name.encode())
    finally:
        await producer.stop()
