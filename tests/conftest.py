"""Shared fixtures; the integration services come from :mod:`tests.services`."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.services import Services, real_services

pytest_plugins = ("tests.tracing_fixtures",)

# Settings read env; keep a developer's .env or shell from leaking into tests.
for _name in list(os.environ):
    if _name.startswith(("INGRESS_", "STREAMS_", "EMAIL_", "OTEL_")) or _name in (
        "SINKS",
        "DEDUPE_WINDOW",
    ):
        del os.environ[_name]


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    with real_services() as found:
        yield found
