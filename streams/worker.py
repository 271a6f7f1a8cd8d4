"""Run one stage as a Faust worker process: ``spakinect-pipeline worker dedupe|postgres|email``.

SIGTERM stops the worker cleanly: agents stop, the current batch is either
finished and acked or left unacked (and repeated by the next owner).
"""

from __future__ import annotations

import asyncio
import logging

import faust

from events.topics import Topics
from spakinect_pipeline.config import KafkaSettings, LogSettings, load_settings
from spakinect_pipeline.tracing import tracer_from_env
from streams.faust_adapter import BoundedStopWorker
from streams.faust_app import create_faust_app, prepare_changelogs, use_uvloop
from streams.runner import StageEnv, StageRunner
from streams.settings import StreamsSettings
from streams.stages import STAGES

log = logging.getLogger(__name__)


def build_stage(stage: str) -> faust.App:
    """Read settings for ``stage`` and wire its Faust app (raises ConfigError on bad env)."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; one of {', '.join(STAGES)}")
    streams = load_settings(StreamsSettings)
    kafka = load_settings(KafkaSettings)
    app = create_faust_app(stage, streams, kafka)
    env = StageEnv(app, streams, kafka, Topics(kafka.topic_prefix))
    StageRunner(env, STAGES[stage](env), tracer_from_env(f"spakinect-{stage}"))
    return app


def run_worker(stage: str) -> None:
    """Run until SIGTERM/SIGINT (Faust's worker handles the signals and the drain)."""
    use_uvloop()
    app = build_stage(stage)
    streams = load_settings(StreamsSettings)
    asyncio.run(prepare_changelogs(app, load_settings(KafkaSettings), streams.dedupe_window))
    level = load_settings(LogSettings).level.lower()
    worker = BoundedStopWorker(
        app,
        shutdown_timeout_s=streams.shutdown_timeout_s,
        loglevel=level,
        override_logging=False,
        redirect_stdouts=False,
        quiet=True,
    )
    worker.execute_from_commandline()
