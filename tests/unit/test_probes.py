"""The readiness rule and the bounded, shared checks behind the worker probes."""

from __future__ import annotations

import asyncio
import time

import pytest

from streams.probes import Assignment, BoundedCheck, CheckFailed, decide

ASSIGNED = Assignment(rebalances=1, rebalancing=False, partitions=3)


def test_ready_when_rebalanced_and_every_dependency_answered() -> None:
    readiness = decide(ASSIGNED, {"kafka": None, "postgres": None})
    assert readiness.ready
    assert readiness.body == {
        "ready": True,
        "partitions": 3,
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
