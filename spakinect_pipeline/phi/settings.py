"""``PHI_*`` settings: keys, retention and the sweep that enforces it."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings

from spakinect_pipeline.config import ConfigError, Duration, component_config
from spakinect_pipeline.phi.crypto import (
    BlindIndex,
    Keyring,
    PhiKeyError,
    parse_key,
    parse_keys,
)
from spakinect_pipeline.phi.paths import Path, PathError, parse_paths

HOW_TO = "generate one with `spakinect-pipeline phi new-key` (local `make up` writes .data/phi.env)"


class PhiSettings(BaseSettings):
    """Patient-data keys and retention.

    The keys have no default anywhere: every process that reads or writes
    patient fields refuses to start without them, so a forgotten variable in
    production cannot silently mean plaintext. ``make up`` and the tests
    generate their own.
    """

    model_config = component_config("PHI_")

    encryption_keys: SecretStr | None = None
    index_key: SecretStr | None = None
    retention: Duration | None = Field(default=None, gt=0)
    sweep_interval: Duration = Field(default=3600.0, gt=0)
    sweep_batch: int = Field(default=500, ge=1, le=100_000)
    extra_paths: str = ""
    # Patient fields on Kafka (docs/patient-data-on-kafka.md): off until subscribers read v2.
    kafka_seal: bool = False
    kafka_master_keys: SecretStr | None = None
    unparsed_key_ttl: Duration = Field(default=7 * 86400.0, gt=0)

    def paths(self) -> tuple[Path, ...]:
        """``PHI_EXTRA_PATHS``: more fields of a visit body that hold patient data."""
        try:
            return parse_paths(self.extra_paths)
        except PathError as exc:
            raise ConfigError(f"invalid configuration: PHI_EXTRA_PATHS: {exc}") from None

    def blind_index(self) -> BlindIndex:
        """The index key alone (the email stage checks erasure markers, never decrypts)."""
        if self.index_key is None or not self.index_key.get_secret_value().strip():
            raise ConfigError(f"PHI_INDEX_KEY is required: {HOW_TO}")
        try:
            return BlindIndex(parse_key(self.index_key.get_secret_value(), "value"))
        except PhiKeyError as exc:
            raise ConfigError(f"invalid configuration: PHI_INDEX_KEY: {exc}") from None

    def keyring(self) -> Keyring:
        """The keys, or a ConfigError naming the missing or malformed variable."""
        if self.encryption_keys is None or not self.encryption_keys.get_secret_value().strip():
            raise ConfigError(f"PHI_ENCRYPTION_KEYS is required: {HOW_TO}")
        index = self.blind_index()
        try:
            keys = parse_keys(self.encryption_keys.get_secret_value())
        except PhiKeyError as exc:
            raise ConfigError(f"invalid configuration: PHI_ENCRYPTION_KEYS: {exc}") from None
        return Keyring(keys, index)

    def kafka_master(self) -> Keyring:
        """``PHI_KAFKA_MASTER_KEYS``: wraps the per-patient data keys on the key topic."""
        keys = self.kafka_master_keys
        if keys is None or not keys.get_secret_value().strip():
            raise ConfigError(f"PHI_KAFKA_MASTER_KEYS is required when sealing Kafka: {HOW_TO}")
        index = self.blind_index()
        try:
            return Keyring(parse_keys(keys.get_secret_value()), index)
        except PhiKeyError as exc:
            raise ConfigError(f"invalid configuration: PHI_KAFKA_MASTER_KEYS: {exc}") from None
