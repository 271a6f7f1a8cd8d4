"""Every environment variable the pipeline reads, from its settings classes (for docs/tests)."""

from __future__ import annotations

from pydantic_settings import BaseSettings

from ingress.settings import IngressSettings
from sinks.email.settings import EmailSettings, SmtpSettings
from sinks.postgres.settings import PostgresSettings
from spakinect_pipeline.config import KafkaSettings, LogSettings, env_name
from spakinect_pipeline.phi.settings import PhiSettings
from spakinect_pipeline.tracing import ENV_NAMES as TRACING_ENV_NAMES
from streams.settings import StreamsSettings

SETTINGS: tuple[type[BaseSettings], ...] = (
    KafkaSettings,
    LogSettings,
    IngressSettings,
    StreamsSettings,
    PostgresSettings,
    SmtpSettings,
    EmailSettings,
    PhiSettings,
)


def known_env_names() -> set[str]:
    names = {env_name(cls, field) for cls in SETTINGS for field in cls.model_fields}
    return names | set(TRACING_ENV_NAMES)
