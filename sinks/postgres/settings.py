"""Postgres sink settings."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings

from spakinect_pipeline.config import component_config


class PostgresSettings(BaseSettings):
    """Where the writer's database is (``POSTGRES_DSN``)."""

    model_config = component_config("POSTGRES_")

    dsn: str = Field(default="postgresql://postgres@127.0.0.1:5432/spakinect", min_length=1)
    pool_size: int = Field(default=2, ge=1, le=50)
