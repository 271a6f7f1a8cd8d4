"""Postgres sink settings: the application's DSN and the migrations' (the tables' owner)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from spakinect_pipeline.config import component_config


class PostgresSettings(BaseSettings):
    """Where the database is, and as whom.

    ``POSTGRES_DSN``: the application's role (writer, email stage, console,
    CLI), a member of ``spakinect_app`` (migration 0005): rows only, no DDL,
    and only INSERT and SELECT on ``audit_log``. ``POSTGRES_MIGRATIONS_DSN``:
    the tables' owner, for ``spakinect-pipeline migrate`` (and the writer's
    migration at start where it is given); unset, migrations use
    ``POSTGRES_DSN`` (one role for both: local setups only).
    """

    model_config = component_config("POSTGRES_")

    dsn: str = Field(default="postgresql://postgres@127.0.0.1:5432/spakinect", min_length=1)
    migrations_dsn: str | None = None
    pool_size: int = Field(default=2, ge=1, le=50)

    def owner_dsn(self) -> str:
        """The DSN migrations run with."""
        return self.migrations_dsn or self.dsn
