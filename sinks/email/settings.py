"""SMTP and email settings (``SMTP_*``, ``EMAIL_*``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode

from spakinect_pipeline.config import CsvList, Duration, component_config


class SmtpSettings(BaseSettings):
    """The relay: host, port, STARTTLS and optional login."""

    model_config = component_config("SMTP_")

    host: str = "127.0.0.1"
    port: int = Field(default=1025, ge=1, le=65535)
    username: str | None = None
    password: SecretStr | None = None
    starttls: bool = False
    timeout_s: Duration = Field(default=15.0, gt=0, le=120)


class EmailSettings(BaseSettings):
    """Who gets the clinic email, from whom, with which templates, how fast."""

    model_config = component_config("EMAIL_")

    from_: str = Field(default="spakinect-pipeline@localhost", validation_alias="EMAIL_FROM")
    to: CsvList = Field(default_factory=list)
    to_by_location: Annotated[dict[str, list[str]], NoDecode] = Field(default_factory=dict)
    template_dir: Path | None = None
    patient_notifications: bool = False
    rate_limit_per_min: int = Field(default=120, ge=1, le=100_000)

    @field_validator("to_by_location", mode="before")
    @classmethod
    def _parse_json(cls, value: Any) -> Any:
        if isinstance(value, str):
            if not value.strip():
                return {}
            try:
                value = orjson.loads(value)
            except orjson.JSONDecodeError:
                raise ValueError("must be a JSON object of location_id -> [emails]") from None
        if isinstance(value, dict):
            return {k: [v] if isinstance(v, str) else v for k, v in value.items()}
        return value

    @field_validator("template_dir")
    @classmethod
    def _template_dir_exists(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_dir():
            raise ValueError("is not a directory")
        return value
