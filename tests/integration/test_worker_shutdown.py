"""A worker asked to stop while Kafka is gone or hung still exits, within its shutdown budget."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import httpx
import pytest

from chaos.faults import signal_tree
from devstack.kafka import KafkaBroker
from devstack.process import free_port
from devstack.stack import pipeline_process, stage_argv
from tests.helpers import wait_until

pytestmark = pytest.mark.integration
SHUTDOWN_S = 5


@pytest.mark.parametrize("kafka", ["killed", "hung"])
async def test_sigterm_with_kafka_unreachable_exits_within_the_shutdown_budget(
    broker: KafkaBroker, tmp_path: Path, kafka: str
) -> None:
    """Killed: its sockets close. Hung (SIGSTOP): they stay open and nothing answers, so
    every request Faust's shutdown makes (commit, leave the group) waits forever."""
    port = free_port()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers,
        "KAFKA_PARTITIONS": "1",
        "STREAMS_STATE_DIR": str(tmp_path / "state"),
        "STREAMS_WEB_PORT": str(port),
        "STREAMS_SHUTDOWN_TIMEOUT_S": str(SHUTDOWN_S),
    }
    worker = pipeline_process("dedupe", stage_argv("dedupe"), env, tmp_path / "logs")

    async def consuming() -> bool:
        """Its partitions are assigned: the lag gauge has a sample."""
        try:
            async with httpx.AsyncClient(timeout=5) as client:
                response = await client.get(f"http://127.0.0.1:{port}/metrics")
        except httpx.HTTPError:
            return False
        return "streams_consumer_lag{" in response.text

    async def exited() -> bool:
        return not worker.alive()

    kafka_pid = broker.process.pid if broker.process else None
    assert kafka_pid is not None
    worker.start()
    try:
        await wait_until(consuming, 90, "the worker consuming its partitions")
        if kafka == "killed":
            broker.kill()
        else:
            signal_tree(kafka_pid, signal.SIGSTOP)
        await asyncio.sleep(2)  # the worker's requests now go unanswered
        asked = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        await wait_until(exited, SHUTDOWN_S + 15, "the worker to exit")
        took = time.monotonic() - asked
        assert took < SHUTDOWN_S + 10, f"took {took:.1f}s"
        # Through the watchdog, or cleanly when its consumer gave up first (a busy machine
        # can take that long): never another way out.
        assert worker.popen is not None
        assert worker.popen.returncode == 0 or "did not finish" in worker.log_tail(50), (
            worker.log_tail(50)
        )
    finally:
        worker.stop(grace=1, sig=signal.SIGKILL)
        if kafka == "hung":
            signal_tree(kafka_pid, signal.SIGCONT)  # so the fixture can stop it
