"""The readiness rule and the bounded, shared checks behind the worker probes."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from streams.probes import CHECK_TIMEOUT_S, Assignment, BoundedCheck, CheckFailed, decide

ASSIGNED = Assignment(rebalances=1, rebalancing=False, partitions=3)


def test_ready_when_rebalanced_and_every_dependency_answered() -> None:
    readiness = decide(ASSIGNED, {"kafka": None, "postgres": None})
    assert readiness.ready
    assert readiness.body == {
        "ready": True,
        "partitions": 3,
        "rebalances": 1,
        "checks": {"kafka": "ok", "postgres": "ok"},
    }


def test_a_failed_dependency_makes_it_unready_and_names_why() -> None:
    readiness = decide(ASSIGNED, {"kafka": None, "postgres": "no answer within 1.5s"})
    assert not readiness.ready
    assert readiness.body["problems"] == {"postgres": "no answer within 1.5s"}
    assert readiness.body["checks"]["kafka"] == "ok"


def test_unready_before_the_first_rebalance_and_while_one_runs() -> None:
    never = decide(Assignment(0, False, 0), {"kafka": None})
    assert not never.ready
    assert "joined" in never.body["problems"]["assignment"]
    moving = decide(Assignment(2, True, 3), {"kafka": None})
    assert not moving.ready
    assert "rebalancing" in moving.body["problems"]["assignment"]


def test_idle_worker_with_zero_partitions_is_ready_and_says_idle() -> None:
    readiness = decide(Assignment(1, False, 0), {"kafka": None})
    assert readiness.ready
    assert "standby" in readiness.body["idle"]


def test_an_idle_worker_is_still_unready_when_kafka_fails() -> None:
    readiness = decide(Assignment(1, False, 0), {"kafka": "no metadata"})
    assert not readiness.ready
    assert "idle" not in readiness.body


async def test_a_hung_check_answers_within_its_timeout_and_runs_once() -> None:
    started = 0
    release = asyncio.Event()

    async def hung() -> None:
        nonlocal started
        started += 1
        await release.wait()

    check = BoundedCheck(hung, timeout=0.2)
    began = time.monotonic()
    results = await asyncio.gather(check.failure(), check.failure(), check.failure())
    assert time.monotonic() - began < 1.0
    assert results == ["no answer within 0.2s"] * 3
    assert await check.failure() == "no answer within 0.2s"
    assert started == 1  # later probes wait on the same run, not a new one each
    release.set()
    await asyncio.sleep(0)
    assert await check.failure() is None
    assert started == 2


async def test_a_result_is_reused_for_its_period_then_checked_again() -> None:
    now = 100.0
    calls = 0
    failing = True

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if failing:
            raise CheckFailed("postgres: ConnectionRefusedError")

    check = BoundedCheck(flaky, every=5.0, clock=lambda: now)
    assert await check.failure() == "postgres: ConnectionRefusedError"
    failing = False
    now += 4.9
    assert await check.failure() == "postgres: ConnectionRefusedError"
    assert calls == 1
    now += 0.2
    assert await check.failure() is None
    assert calls == 2


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        (CheckFailed("smtp: ConnectionRefusedError"), "smtp: ConnectionRefusedError"),
        (ValueError("jane.smith@example.test"), "ValueError"),
    ],
)
async def test_failures_show_their_class_never_an_arbitrary_message(
    error: Exception, shown: str
) -> None:
    async def failing() -> None:
        raise error

    assert await BoundedCheck(failing).failure() == shown


async def test_a_worker_serves_its_probes_and_names_what_it_cannot_reach(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    from devstack.process import free_port
    from spakinect_pipeline.phi.crypto import new_key_entry
    from streams.worker import build_stage

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STREAMS_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", f"127.0.0.1:{free_port()}")  # nothing there
    monkeypatch.setenv("POSTGRES_DSN", f"postgresql://pipeline@127.0.0.1:{free_port()}/none")
    monkeypatch.setenv("PHI_ENCRYPTION_KEYS", new_key_entry("k1"))
    monkeypatch.setenv("PHI_INDEX_KEY", new_key_entry().split(":", 1)[1])
    app = build_stage("postgres")
    async with TestClient(TestServer(app.web.web_app)) as client:
        health = await client.get("/healthz")
        assert (health.status, await health.json()) == (200, {"status": "ok"})
        began = time.monotonic()
        ready = await client.get("/readyz")
        assert time.monotonic() - began < 2 * CHECK_TIMEOUT_S
        body = await ready.json()
        assert ready.status == 503
        assert set(body["problems"]) == {"kafka", "postgres", "assignment"}
        assert body["problems"]["postgres"] == (
            "postgres: Postgres not reachable (ConnectionRefusedError): "
            "check POSTGRES_DSN's host and port, the network"
        )
        await app.crash(RuntimeError("agent died"))
        crashed = await client.get("/healthz")
        assert (crashed.status, await crashed.json()) == (503, {"status": "crashed"})
