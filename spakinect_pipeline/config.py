"""Settings shared by every component, and the helpers that read env the same way.

Each component owns a frozen pydantic-settings class (built by the app factory,
never at import time). Durations accept ``45s``, ``30m``, ``12h``, ``7d`` or
plain seconds; lists are comma-separated. A wrong value stops start-up with a
:class:`ConfigError` naming the environment variable.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


class ConfigError(Exception):
    """A setting is missing or wrong; the message names the environment variable."""


def parse_duration(value: Any) -> float:
    """Return seconds for ``45s``, ``30m``, ``12h``, ``7d``, ``250ms`` or plain seconds."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    elif isinstance(value, str) and (match := _DURATION.match(value)):
        seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2) or "s"]
    else:
        raise ValueError("expected a duration such as 45s, 30m, 12h, 7d or plain seconds")
    if seconds < 0:
        raise ValueError("a duration cannot be negative")
    return seconds


def parse_csv(value: Any) -> Any:
    """Split a comma-separated env value into a list of non-empty, stripped items."""
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


Duration = Annotated[float, BeforeValidator(parse_duration)]
"""Seconds, read from ``45s``/``30m``/``12h``/``7d`` or plain seconds."""

CsvList = Annotated[list[str], NoDecode, BeforeValidator(parse_csv)]
"""A list read from a comma-separated env value."""


def component_config(prefix: str) -> SettingsConfigDict:
    """The model config every component's settings share: env prefix, `.env`, frozen."""
    return SettingsConfigDict(
        env_prefix=prefix,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        case_sensitive=False,
    )


SettingsT = TypeVar("SettingsT", bound=BaseSettings)


def load_settings(cls: type[SettingsT], **overrides: Any) -> SettingsT:
    """Build ``cls`` from env, turning validation errors into one :class:`ConfigError`.

    The message names each wrong variable and what is expected, never its value
    (values may be secrets).
    """
    try:
        return cls(**overrides)
    except ValidationError as exc:
        str(cls.model_config.get("env_prefix", ""))
        problems = []
        for error in exc.errors():
            if error["loc"]:
                problems.append(f"{env_name(cls, str(error['loc'][0]))}: {error['msg']}")
            else:
                problems.append(str(error["msg"]).removeprefix("Value error, "))
        raise ConfigError("invalid configuration: " + "; ".join(problems)) from None


def env_name(cls: type[BaseSettings], field: str) -> str:
    """The environment variable a settings field is read from."""
    info = cls.model_fields.get(field)
    if info is not None and isinstance(info.validation_alias, str):
        return info.validation_alias.upper()
    return (str(cls.model_config.get("env_prefix", "")) + field).upper()


class KafkaSettings(BaseSettings):
    """Where Kafka is and how our topics are shaped; shared by ingress, streams and tools."""

    model_config = component_config("KAFKA_")

    bootstrap_servers: CsvList = Field(default_factory=lambda: ["127.0.0.1:9092"])
    topic_prefix: str = "spakinect."
    partitions: int = Field(default=6, ge=1, le=1000)
    replication_factor: int = Field(default=1, ge=1, le=10)
    min_insync_replicas: int = Field(default=1, ge=1, le=10)
    retention_ms: int = Field(default=14 * 86_400_000, ge=60_000)
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None

    def client_options(self) -> dict[str, Any]:
        """Connection options for aiokafka producers, consumers and admin clients."""
        options: dict[str, Any] = {
            "bootstrap_servers": ",".join(self.bootstrap_servers),
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in ("SSL", "SASL_SSL"):
            from aiokafka.helpers import create_ssl_context

            options["ssl_context"] = create_ssl_context(
                cafile=self.ssl_cafile, certfile=self.ssl_certfile, keyfile=self.ssl_keyfile
            )
        if self.sasl_mechanism:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        return options


class LogSettings(BaseSettings):
    """How every process logs: level and format (json for machines, console for people)."""

    model_config = component_config("LOG_")

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "console"] = "console"
