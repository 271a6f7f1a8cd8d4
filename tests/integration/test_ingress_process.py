"""The ingress as its real process (uvicorn): SIGTERM drains in-flight requests."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import httpx
import pytest

from devstack.process import free_port
from devstack.stack import http_ok, pipeline_process
from events.samples import SAMPLES
from tests.services import Services

pytestmark = pytest.mark.integration


async def test_sigterm_answers_every_in_flight_request_then_exits(
    services: Services, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        "KAFKA_BOOTSTRAP_SERVERS": services.kafka_bootstrap,
        # No such topics: every publish waits out its 2 s budget, so requests are in flight.
        "KAFKA_TOPIC_PREFIX": f"absent{uuid.uuid4().hex[:6]}.",
        "INGRESS_PORT": str(port),
        "INGRESS_ALLOW_UNAUTHENTICATED": "true",
        "INGRESS_PUBLISH_TIMEOUT_S": "2",
    }
    ingress = pipeline_process("ingress", ["ingress"], env, tmp_path)
    ingress.start()
    try:
        await asyncio.to_thread(
            ingress.wait_ready, lambda: http_ok(f"http://127.0.0.1:{port}/healthz"), 30, "healthz"
        )
        async with httpx.AsyncClient(timeout=10) as client:
            url = f"http://127.0.0.1:{port}/webhooks/visit-completed"
            requests = [
                asyncio.create_task(client.post(url, json=SAMPLES["visit.completed"]))
                for _ in range(5)
            ]
            await asyncio.sleep(0.5)
            ingress.send_signal(signal.SIGTERM)
            responses = await asyncio.gather(*requests)
        assert [r.status_code for r in responses] == [503] * 5
        assert all(r.headers["Retry-After"] == "5" for r in responses)
        code = await asyncio.to_thread(ingress.popen.wait, 15)  # type: ignore[union-attr]
        # uvicorn re-raises the signal after its graceful shutdown, as process managers expect.
        assert code in (0, -signal.SIGTERM)
    finally:
        ingress.stop()
