"""Settings shared by every component, and the helpers that read env the same way.

Each component owns a frozen pydantic-settings class (built by the app factory,
never at import time). Durations accept ``45s``, ``30m``, ``12h``, ``7d`` or
plain seconds; lists are comma-separated. A wrong value stops start-up with a
:class:`ConfigError` naming the environment variable.
"""

from __future__ import annotations

import re
import ssl
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BeforeValidator, Field, SecretStr, ValidationError, model_validator
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

    @model_validator(mode="after")
    def _security_is_whole(self) -> KafkaSettings:
        """Every security setting the protocol needs is set, and none it would ignore.

        The aiokafka clients and the Faust workers read the same settings
        (:meth:`client_options`, ``streams.faust_app.broker_credentials``), so
        a half-set protocol stops start-up here instead of each client falling
        back to its own default. Messages name variables, never values.
        """
        problems = security_problems(self)
        if problems:
            raise ValueError("; ".join(problems))
        return self

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in SASL_PROTOCOLS

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in TLS_PROTOCOLS

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context of SSL/SASL_SSL (system CAs unless KAFKA_SSL_CAFILE), else None."""
        if not self.uses_tls:
            return None
        context, problems = _tls_context(self)
        if context is None:  # validated at start-up; a file changed since
            raise ConfigError("invalid configuration: " + "; ".join(problems))
        return context

    def client_options(self) -> dict[str, Any]:
        """Connection options for aiokafka producers, consumers and admin clients."""
        options: dict[str, Any] = {
            "bootstrap_servers": ",".join(self.bootstrap_servers),
            "security_protocol": self.security_protocol,
        }
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            options["sasl_mechanism"] = self.sasl_mechanism
            options["sasl_plain_username"] = self.sasl_username
            options["sasl_plain_password"] = (
                self.sasl_password.get_secret_value() if self.sasl_password else None
            )
        return options


SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")
TLS_PROTOCOLS = ("SSL", "SASL_SSL")
_SASL_FIELDS = ("sasl_mechanism", "sasl_username", "sasl_password")
_TLS_FIELDS = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")


def security_problems(kafka: KafkaSettings) -> list[str]:
    """What is missing or contradictory in the Kafka security settings (empty: all fine)."""
    name = {field: env_name(KafkaSettings, field) for field in _SASL_FIELDS + _TLS_FIELDS}
    protocol = env_name(KafkaSettings, "security_protocol")
    problems: list[str] = []
    for field in _SASL_FIELDS:
        value = getattr(kafka, field)
        blank = value is None or not (
            value.get_secret_value() if isinstance(value, SecretStr) else value
        )
        if kafka.uses_sasl and blank:
            problems.append(
                f"{name[field]}: required when {protocol} is SASL_PLAINTEXT or SASL_SSL"
            )
        elif not kafka.uses_sasl and not blank:
            problems.append(
                f"{name[field]}: set, but {protocol} is not SASL_PLAINTEXT or SASL_SSL "
                "(set the protocol, or unset this)"
            )
    for field in _TLS_FIELDS:
        if not kafka.uses_tls and getattr(kafka, field):
            problems.append(
                f"{name[field]}: set, but {protocol} is not SSL or SASL_SSL "
                "(set the protocol, or unset this)"
            )
    if kafka.ssl_keyfile and not kafka.ssl_certfile:
        problems.append(f"{name['ssl_keyfile']}: set without {name['ssl_certfile']}")
    if kafka.uses_tls and not problems:
        problems.extend(_tls_context(kafka)[1])
    return problems


def _tls_context(kafka: KafkaSettings) -> tuple[ssl.SSLContext | None, list[str]]:
    """Build the client TLS context, or say which file setting cannot be used (not its path)."""
    cafile = env_name(KafkaSettings, "ssl_cafile")
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=kafka.ssl_cafile)
    except ssl.SSLError:
        return None, [f"{cafile}: not a PEM bundle of CA certificates"]
    except OSError as exc:
        return None, [f"{cafile}: cannot read the file ({type(exc).__name__})"]
    if kafka.ssl_certfile:
        pair = env_name(KafkaSettings, "ssl_certfile")
        if kafka.ssl_keyfile:
            pair += "/" + env_name(KafkaSettings, "ssl_keyfile")
        try:
            context.load_cert_chain(kafka.ssl_certfile, kafka.ssl_keyfile)
        except ssl.SSLError:
            return None, [
                f"{pair}: not a PEM client certificate with its private key "
                "(or the key does not match the certificate)"
            ]
        except OSError as exc:
            return None, [f"{pair}: cannot read the file ({type(exc).__name__})"]
    return context, []


class LogSettings(BaseSettings):
    """How every process logs: level and format (json for machines, console for people)."""

    model_config = component_config("LOG_")

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "console"] = "console"
