"""Ingress settings (``INGRESS_*``), built by the app factory, never at import time."""

from __future__ import annotations

import ipaddress
from typing import Annotated, Any

from pydantic import BeforeValidator, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, NoDecode

from spakinect_pipeline.config import ConfigError, CsvList, Duration, component_config, parse_csv

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def _networks(value: Any) -> Any:
    items = parse_csv(value)
    if isinstance(items, list):
        return [ipaddress.ip_network(item, strict=False) for item in items]
    return items


NetworkList = Annotated[list[Network], NoDecode, BeforeValidator(_networks)]
SecretList = Annotated[list[SecretStr], NoDecode, BeforeValidator(parse_csv)]


class IngressSettings(BaseSettings):
    """Who may post, how much, and how long we wait for Kafka before answering 503."""

    model_config = component_config("INGRESS_")

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    shared_secret: SecretStr | None = None
    allowed_cidrs: NetworkList = Field(default_factory=list)
    trusted_proxies: NetworkList = Field(default_factory=list)
    hmac_secrets: SecretList = Field(default_factory=list)
    hmac_tolerance_s: Duration = 300.0
    allow_unauthenticated: bool = False
    max_body_bytes: int = Field(default=256 * 1024, ge=1024, le=16 * 1024 * 1024)
    publish_timeout_s: Duration = Field(default=5.0, gt=0, le=8.0)
    retry_after_s: int = Field(default=5, ge=1, le=3600)
    metrics_token: SecretStr | None = None
    linger_ms: int = Field(default=5, ge=0, le=1000)  # adaptive: a lone webhook waits none
    root_path: str = ""
    workers: int = Field(default=1, ge=1, le=64)

    @model_validator(mode="after")
    def _secure_by_default(self) -> IngressSettings:
        if not (
            self.shared_secret
            or self.allowed_cidrs
            or self.hmac_secrets
            or self.allow_unauthenticated
        ):
            raise ValueError(
                "no authentication configured: set INGRESS_SHARED_SECRET, "
                "INGRESS_ALLOWED_CIDRS or INGRESS_HMAC_SECRETS "
                "(or INGRESS_ALLOW_UNAUTHENTICATED=true for local use only)"
            )
        return self

    @property
    def authenticated(self) -> bool:
        return bool(self.shared_secret or self.allowed_cidrs or self.hmac_secrets)


__all__ = ["ConfigError", "CsvList", "IngressSettings"]
