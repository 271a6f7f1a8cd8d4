"""Worker probes on ``STREAMS_WEB_PORT``: ``GET /healthz`` (liveness), ``GET /readyz`` (readiness).

``/healthz`` is answered by a handler on the worker's event loop, the same
loop that runs the stage: a loop blocked by a stuck call answers nothing, so
the kubelet's probe timeout fails it. It is 503 once the app has crashed.

``/readyz`` is 200 when the worker has finished a rebalance (its partitions
assigned and its table state restored) and every dependency answered: Kafka
for every stage, plus the stage's sink (Postgres for ``postgres``, SMTP for
``email``; ``dedupe`` has none). The decision is :func:`decide`, pure; the
checks reuse what the stage already holds (its Kafka producer, its Postgres
pool) and each runs at most once at a time and is awaited for at most
:data:`CHECK_TIMEOUT_S`, so a hung dependency answers 503 promptly instead
of hanging the probe or piling up connections.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import aiosmtplib
import faust

from sinks.base import SinkError
from sinks.email.settings import SmtpSettings
from sinks.postgres.writer import PostgresSink
from spakinect_pipeline.publisher import Publisher
from streams.faust_app import changelog_topics

CHECK_TIMEOUT_S = 1.5
# How long a check's answer is reused: a metadata request and a SELECT 1 travel on
# connections the stage keeps anyway; an SMTP check opens one, so it runs less often.
REUSE_S = {"kafka": 5.0, "postgres": 2.0, "smtp": 15.0}
Check = Callable[[], Awaitable[None]]
"""Returns when the dependency answered; raises (with a message safe to show) when not."""


class CheckFailed(Exception):
    """A dependency did not answer as it should; ``str()`` names what, never data."""


@dataclass(frozen=True, slots=True)
class Assignment:
    """What the worker knows about its consumer group membership."""

    rebalances: int  # rebalances started so far (0: never joined)
    rebalancing: bool  # a rebalance (or the table restore after it) is under way
    partitions: int  # source partitions assigned now


@dataclass(frozen=True, slots=True)
class Readiness:
    """The answer of ``/readyz``: its status, and a body that names every failed part."""

    ready: bool
    body: dict[str, Any] = field(default_factory=dict)


def decide(assignment: Assignment, failures: Mapping[str, str | None]) -> Readiness:
    """Ready when a rebalance has finished and no dependency failed.

    ``failures`` maps each dependency (``kafka``, ``postgres``, ``smtp``) to
    why it failed, or ``None`` when it answered. A worker with zero
    partitions after a finished rebalance (more workers than partitions) is
    ready: it is a correctly working standby that takes over partitions when
    another member leaves, and calling it unready would stall rollouts and
    page for a healthy configuration. The body says ``idle`` so it can be told
    apart.
    """
    problems = {name: why for name, why in failures.items() if why is not None}
    if assignment.rebalances == 0:
        problems["assignment"] = "not yet joined the consumer group"
    elif assignment.rebalancing:
        problems["assignment"] = "rebalancing (partitions moving, table state restoring)"
    body: dict[str, Any] = {
        "ready": not problems,
        "partitions": assignment.partitions,
        "rebalances": assignment.rebalances,  # since start: a storm shows as a climbing count
        "checks": {name: failures[name] or "ok" for name in sorted(failures)},
    }
    if problems:
        body["problems"] = problems
    elif assignment.partitions == 0:
        body["idle"] = "no partitions assigned: more workers than partitions; a standby"
    return Readiness(not problems, body)


class BoundedCheck:
    """Runs ``check`` at most once at a time; a probe waits for it at most ``timeout``.

    A result is reused for ``every`` seconds, so frequent probes do not turn
    into frequent round trips. A check still running when its probe gives up
    keeps running (and later probes wait on the same run), so a hung
    dependency holds one request, not one per probe.
    """

    def __init__(
        self,
        check: Check,
        *,
        timeout: float = CHECK_TIMEOUT_S,
        every: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.check = check
        self.timeout = timeout
        self.every = every
        self.clock = clock
        self._running: asyncio.Future[str | None] | None = None
        self._last: tuple[float, str | None] | None = None

    async def failure(self) -> str | None:
        """Why the dependency is not usable now, or ``None`` when it answered."""
        if self._last is not None and self.clock() - self._last[0] < self.every:
            return self._last[1]
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._run())
        try:
            return await asyncio.wait_for(asyncio.shield(self._running), self.timeout)
        except TimeoutError:
            return f"no answer within {self.timeout:g}s"

    async def _run(self) -> str | None:
        try:
            await self.check()
        except asyncio.CancelledError:
            raise
        except CheckFailed as exc:
            result: str | None = str(exc)
        except Exception as exc:  # noqa: BLE001 - any error means "not usable"; its type is safe
            result = type(exc).__name__
        else:
            result = None
        self._last = (self.clock(), result)
        return result


def kafka_check(publisher: Publisher, topics: Sequence[str]) -> Check:
    """Kafka answers a metadata request on the stage's own producer and knows ``topics``."""

    async def check() -> None:
        if not await publisher.refresh_metadata(topics, timeout=CHECK_TIMEOUT_S):
            raise CheckFailed("no metadata for the stage's topics (Kafka unreachable?)")

    return check


def postgres_check(sink: PostgresSink) -> Check:
    """``SELECT 1`` on the writer's own connection pool (no new connection while it lives)."""

    async def check() -> None:
        try:
            await sink.ping(CHECK_TIMEOUT_S)
        except SinkError as exc:
            raise CheckFailed(f"postgres: {exc}") from None

    return check


def smtp_check(smtp: SmtpSettings) -> Check:
    """The relay greets a new connection (the stage keeps none open between emails)."""

    async def check() -> None:
        client = aiosmtplib.SMTP(
            hostname=smtp.host, port=smtp.port, timeout=CHECK_TIMEOUT_S, start_tls=False
        )
        try:
            await client.connect()
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise CheckFailed(f"smtp: {type(exc).__name__}") from None
        try:
            await client.quit()
        except (aiosmtplib.SMTPException, OSError):
            client.close()

    return check


def assignment_of(app: faust.App) -> Assignment:
    """Read the group state Faust keeps (``rebalancing`` lasts until tables are restored)."""
    changelogs = set(changelog_topics(app))
    try:
        assigned = app.consumer.assignment()
    except Exception:  # noqa: BLE001 - consumer not started yet: nothing assigned
        assigned = set()
    partitions = sum(1 for tp in assigned if tp.topic not in changelogs)
    return Assignment(app.rebalancing_count, bool(app.rebalancing), partitions)


class StageProbes:
    """Registers ``/healthz`` and ``/readyz`` on the stage's Faust web server."""

    def __init__(self, app: faust.App, checks: Mapping[str, BoundedCheck]) -> None:
        self.app = app
        self.checks = dict(checks)

        @app.page("/healthz")
        async def healthz(web: Any, request: Any) -> Any:
            if app.crashed:
                return web.json({"status": "crashed"}, status=503)
            return web.json({"status": "ok"})

        @app.page("/readyz")
        async def readyz(web: Any, request: Any) -> Any:
            readiness = await self.readiness()
            return web.json(readiness.body, status=200 if readiness.ready else 503)

    async def readiness(self) -> Readiness:
        """Run every check concurrently (each bounded), then decide."""
        names = sorted(self.checks)
        results = await asyncio.gather(*(self.checks[name].failure() for name in names))
        return decide(assignment_of(self.app), dict(zip(names, results, strict=True)))


def add_probes(
    app: faust.App,
    publisher: Publisher,
    topics: Sequence[str],
    sink_checks: Mapping[str, Check] | None = None,
) -> StageProbes:
    """The probes of one stage: Kafka through its ``publisher`` (and ``topics``), then its sink."""
    checks = {"kafka": kafka_check(publisher, topics), **(sink_checks or {})}
    bounded = {name: BoundedCheck(check, every=REUSE_S[name]) for name, check in checks.items()}
    return StageProbes(app, bounded)
