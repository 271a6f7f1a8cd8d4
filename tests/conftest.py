"""Shared fixtures; the integration services come from :mod:`tests.services`."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.services import Services, real_services

pytest_plugins = ("tests.tracing_fixtures",)

# Settings read env; keep a developer's .env or shell from leaking into tests.
for _name in list(os.environ):
    if _name.startswith(("INGRESS_", "STREAMS_", "EMAIL_", "PHI_", "OTEL_")) or _name in (
        "SINKS",
        "DEDUPE_WINDOW",
    ):
        del os.environ[_name]


STARTED: list[Services] = []


@pytest.fixture(scope="session")
def services() -> Iterator[Services]:
    with real_services() as found:
        STARTED.append(found)
        yield found


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Say which services the integration tests ran against (env, testcontainers, devstack)."""
    for found in STARTED:
        terminalreporter.write_line(f"integration services: {found.origin}")
