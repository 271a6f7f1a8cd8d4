"""Run one stage as a Faust worker process: ``spakinect-pipeline worker dedupe|postgres|email``.

SIGTERM stops the worker cleanly: agents stop, the current batch is either
finished and acked or left unacked (and repeated by the next owner).
"""

from __future__ import annotations

import asyncio

import faust

from sinks.email.settings import EmailSettings, SmtpSettings
from sinks.postgres.settings import PostgresSettings
from sinks.postgres.writer import PostgresSink
from spakinect_pipeline.config import KafkaSettings, LogSettings, load_settings
from streams.dedupe import DedupeStage
from streams.email_stage import EmailStage
from streams.faust_app import create_faust_app, prepare_changelogs
from streams.settings import STAGES, StreamsSettings
from streams.sink_stage import BatchSinkStage


def build_stage(stage: str) -> faust.App:
    """Read settings for ``stage`` and wire its Faust app (raises ConfigError on bad env)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
    streams = load_settings(StreamsSettings)
    kafka = load_settings(KafkaSettings)
    app = create_faust_app(stage, streams, kafka)
    if stage == "dedupe":
        DedupeStage(app, streams, kafka)
    elif stage == "postgres":
        pg = load_settings(PostgresSettings)
        BatchSinkStage(app, PostgresSink(pg.dsn, pool_size=pg.pool_size), streams, kafka)
    else:
        EmailStage(app, streams, kafka, load_settings(EmailSettings), load_settings(SmtpSettings))
    return app


def run_worker(stage: str) -> None:
    """Run until SIGTERM/SIGINT (Faust's worker handles the signals and the drain)."""
    app = build_stage(stage)
    window_s = load_settings(StreamsSettings).dedupe_window
    asyncio.run(prepare_changelogs(app, load_settings(KafkaSettings), window_s))
    level = load_settings(LogSettings).level.lower()
    worker = faust.Worker(
        app, loglevel=level, override_logging=False, redirect_stdouts=False, quiet=True
    )
    worker.execute_from_commandline()
