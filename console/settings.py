"""``CONSOLE_*`` settings: where the console listens and how its sessions are signed."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from spakinect_pipeline.config import ConfigError, Duration, component_config


class ConsoleSettings(BaseSettings):
    """The console's own port and session rules.

    ``secret_key`` signs the session cookies: every replica behind one load
    balancer needs the same one, and changing it logs everybody out. With
    ``trusted_proxy_header`` set (e.g. ``X-Forwarded-User`` from an OIDC
    proxy), that header names the user and no password is asked: only set it
    when nothing but the proxy can reach the console. ``forwarded_allow_ips``
    (comma-separated addresses, or ``*``) lists the load balancers whose
    ``X-Forwarded-For`` is believed: without it, every client behind a load
    balancer has the balancer's address, for the login limit and the audit log.
    """

    model_config = component_config("CONSOLE_")

    bind: str = "127.0.0.1:8100"
    secret_key: SecretStr | None = None
    session_ttl: Duration = Field(default=8 * 3600.0, gt=0)
    trusted_proxy_header: str | None = None
    login_attempts: int = Field(default=5, ge=1, le=1000)
    login_window: Duration = Field(default=900.0, gt=0)
    login_backoff: Duration = Field(default=30.0, gt=0)
    login_max_delay: Duration = Field(default=5.0, ge=0)
    secure_cookies: bool = False
    forwarded_allow_ips: str | None = None

    @field_validator("bind")
    @classmethod
    def _host_port(cls, value: str) -> str:
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError("expected host:port, e.g. 127.0.0.1:8100")
        return value

    @property
    def host(self) -> str:
        return self.bind.rpartition(":")[0].strip("[]")

    @property
    def port(self) -> int:
        return int(self.bind.rpartition(":")[2])

    def signing_key(self) -> str:
        if self.secret_key is None or len(self.secret_key.get_secret_value()) < 32:
            raise ConfigError(
                "CONSOLE_SECRET_KEY is required (at least 32 characters): "
                "generate one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`"
            )
        return self.secret_key.get_secret_value()
