"""Streams settings: stage identity, state location, dedupe window, enabled sinks."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings

from events.topics import SINK_NAMES
from spakinect_pipeline.config import CsvList, Duration, component_config

# Source messages dead-lettered in a row that stop a stage (STREAMS_DLQ_LIMIT).
DEFAULT_DLQ_LIMIT = 1000


class StreamsSettings(BaseSettings):
    """What every worker process needs besides Kafka's own settings."""

    model_config = component_config("STREAMS_")

    app_id: str = Field(default="spakinect-pipeline", min_length=1, pattern=r"^[A-Za-z0-9._-]+$")
    state_dir: Path = Path(".data/state")
    web_port: int = Field(default=6066, ge=0, le=65535)
    # Where /metrics, /healthz, /readyz listen; 0.0.0.0 in a pod (kubelet, Prometheus).
    web_bind: str = Field(default="127.0.0.1", min_length=1)
    store: Literal["rocksdb", "memory"] = "rocksdb"
    dedupe_window: Duration = Field(default=7 * 86400.0, gt=0, validation_alias="DEDUPE_WINDOW")
    sinks: CsvList = Field(default_factory=lambda: list(SINK_NAMES), validation_alias="SINKS")
    batch_max: int = Field(default=500, ge=1, le=10_000)
    batch_within_s: Duration = Field(default=0.05, gt=0, le=10)
    # How long the broker may hold a source fetch to gather fetch_min_bytes
    # (streams.fetch_shape.FetchShape). The default is Faust's: any byte is
    # delivered at once. At hundreds of events/s, e.g. 16384 and 0.05 batch the
    # fetches (less CPU per event, up to fetch_max_wait more latency per stage)
    # at the price of polling every fetch_max_wait when idle (docs/deployment.md, Sizing).
    fetch_min_bytes: int = Field(default=1, ge=1, le=50 * 2**20)
    fetch_max_wait_s: Duration = Field(default=1.5, gt=0, le=10)
    # With fetch_min_bytes at 1: at high rates, let the broker gather this long's worth
    # of the recent rate per fetch (fewer fetch requests, at most this much latency per
    # stage); at quiet hours each event is fetched at once (streams.fetch_shape). 0: off,
    # the default: live it saves the dedupe stage ~25 %, but a drain of a backlog ran
    # 0.8x as fast at 1.4x the CPU (docs/deployment.md, Sizing).
    fetch_adapt_wait_s: Duration = Field(default=0.0, ge=0, le=1)
    # Source messages dead-lettered in a row that stop a stage (a bad deploy, a sink
    # rejecting every row) instead of emptying its topics into the DLQ.
    dlq_limit: int = Field(default=DEFAULT_DLQ_LIMIT, gt=0)
    retry_max_backoff_s: Duration = Field(default=30.0, gt=0, le=600)
    # How soon a crashed worker's partitions (and table state) move to another worker.
    session_timeout_s: Duration = Field(default=10.0, ge=6, le=300)
    # How long a requested stop may take before the process exits anyway (Kafka unreachable).
    shutdown_timeout_s: Duration = Field(default=30.0, ge=1, le=600)
    # How long a stop or a revoke waits for the batch in flight (an email being sent) to
    # finish, be marked and committed; past it the batch is fenced and repeated by the
    # partition's next owner (docs/commit-protocol.md). Below shutdown_timeout_s; unset:
    # 10 s, or half of shutdown_timeout_s if that is shorter.
    drain_timeout_s: Duration | None = Field(default=None, gt=0, le=300)

    @field_validator("sinks")
    @classmethod
    def _known_sinks(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(SINK_NAMES))
        if unknown:
            raise ValueError(f"unknown sink(s) {unknown}; known: {', '.join(SINK_NAMES)}")
        return value

    @model_validator(mode="after")
    def _drain_within_shutdown(self) -> StreamsSettings:
        if self.drain_timeout_s is not None and self.drain_timeout_s >= self.shutdown_timeout_s:
            raise ValueError(
                "STREAMS_DRAIN_TIMEOUT_S must be below STREAMS_SHUTDOWN_TIMEOUT_S "
                "(the drain is part of the stop)"
            )
        return self

    @property
    def drain_bound_s(self) -> float:
        """How long a stop or a revoke waits for the batch in flight."""
        if self.drain_timeout_s is not None:
            return self.drain_timeout_s
        return min(10.0, self.shutdown_timeout_s / 2)

    def group_id(self, stage: str) -> str:
        """Each stage is its own consumer group (and prefix of its changelog topics)."""
        return f"{self.app_id}-{stage}"
