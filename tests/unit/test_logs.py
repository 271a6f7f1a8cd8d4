"""JSON log lines: every record is one JSON line, whatever values its fields hold."""

from __future__ import annotations

import json
import logging

import pytest

from spakinect_pipeline.config import LogSettings
from spakinect_pipeline.logs import configure_logging


@pytest.mark.parametrize(
    ("field", "value", "rendered"),
    [
        ("big", 2**70, 2**70),
        ("by_id", {1: "a", None: "b"}, {"1": "a", "null": "b"}),
        ("text", "lone \ud800 surrogate", "lone \ud800 surrogate"),
    ],
)
def test_values_orjson_refuses_still_make_one_json_line(
    field: str, value: object, rendered: object, capsys: pytest.CaptureFixture[str]
) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging(LogSettings(format="json", level="INFO"))
    try:
        logging.getLogger("test.logs").info("stored", extra={field: value})
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    err = capsys.readouterr().err
    assert "Logging error" not in err
    [line] = err.splitlines()
    record = json.loads(line)
    assert record["event"] == "stored"
    assert record[field] == rendered
