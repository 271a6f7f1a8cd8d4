"""Logging for every process: stdlib logging rendered by structlog as JSON or console.

Code logs with the stdlib (``logging.getLogger(__name__)``) and ``extra={...}``
fields; never pass patient names or emails (PHI) — log ids only.
"""

from __future__ import annotations

import json
import logging
import sys
import traceback
from typing import Any

import orjson
import structlog

from spakinect_pipeline.config import LogSettings


def configure_logging(settings: LogSettings) -> None:
    """Route all stdlib logging through one structlog formatter on stderr."""
    shared: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(serializer=_orjson_text)
        if settings.format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    logging.getLogger().handlers[:] = [handler]
    set_levels(settings.level)


def _orjson_text(value: Any, **options: Any) -> str:
    """JSON text by orjson (every request logs a line: several times faster than json.dumps);
    structlog passes ``default`` for values JSON has no type for.

    orjson refuses what the stdlib renders (ints beyond 64 bits, non-str dict keys,
    lone surrogates): those lines go through ``json.dumps`` rather than being lost.
    """
    default = options.get("default")
    try:
        return orjson.dumps(value, default=default).decode()
    except TypeError:
        return json.dumps(value, default=default or str)


# Libraries whose DEBUG/INFO output can carry message payloads (aiokafka logs whole
# produce requests at DEBUG): capped at WARNING whatever LOG_LEVEL says, since the
# payloads hold patient names and emails.
CAPPED_LOGGERS = (
    "aiokafka",
    "kafka",
    "faust",
    "mode",
    "asyncpg",
    "aiosmtplib",
    "httpx",
    "httpcore",
)


def set_levels(level: str) -> None:
    """Root at ``level``; payload-carrying libraries never below WARNING."""
    root = logging.getLogger()
    root.setLevel(level)
    # uvicorn's access log prints query strings (the shared secret may be one); ours doesn't.
    logging.getLogger("uvicorn.access").disabled = True
    for name in CAPPED_LOGGERS:
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def error_facts(exc: BaseException) -> dict[str, str]:
    """An unexpected error, loggable as ``extra``: its class and where it was raised, not its text.

    The text of an error nobody classified can quote a payload (patient data,
    a driver error quoting a value), so it is never logged.
    """
    stack = "".join(traceback.format_tb(exc.__traceback__))
    return {"error_type": type(exc).__name__, "stack": stack}
