"""The ingress as its real process (uvicorn): SIGTERM drains in-flight requests, and its log
file never holds the shared secret."""

from __future__ import annotations

import asyncio
import json
import signal
import uuid
from pathlib import Path

import httpx
import pytest

from devstack.process import ManagedProcess, free_port
from devstack.stack import http_ok, pipeline_process
from events.samples import SAMPLES
from tests.services import Services

pytestmark = pytest.mark.integration


async def start_ingress(
    services: Services, tmp_path: Path, **env: str
) -> tuple[ManagedProcess, str]:
    """The ``ingress`` subcommand as its own process, logging to ``tmp_path/ingress.log``."""
    port = int(env.get("INGRESS_PORT") or free_port())
    env = {"KAFKA_BOOTSTRAP_SERVERS": services.kafka_bootstrap, "INGRESS_PORT": str(port), **env}
    ingress = pipeline_process("ingress", ["ingress"], env, tmp_path)
    ingress.start()
    base = f"http://127.0.0.1:{port}"
    try:
        await asyncio.to_thread(ingress.wait_ready, lambda: http_ok(f"{base}/healthz"), 30, "up")
    except BaseException:
        ingress.stop()
        raise
    return ingress, base


async def test_sigterm_answers_every_in_flight_request_then_exits(
    services: Services, tmp_path: Path
) -> None:
    ingress, base = await start_ingress(
        services,
        tmp_path,
        # No such topics: every publish waits out its 2 s budget, so requests are in flight.
        KAFKA_TOPIC_PREFIX=f"absent{uuid.uuid4().hex[:6]}.",
        INGRESS_ALLOW_UNAUTHENTICATED="true",
        INGRESS_PUBLISH_TIMEOUT_S="2",
    )
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            url = f"{base}/webhooks/visit-completed"
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


async def test_the_shared_secret_sent_as_query_token_never_reaches_the_log_file(
    services: Services, tmp_path: Path
) -> None:
    secret = f"query-secret-{uuid.uuid4().hex}"
    ingress, base = await start_ingress(
        services, tmp_path, INGRESS_SHARED_SECRET=secret, LOG_FORMAT="json", LOG_LEVEL="DEBUG"
    )
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.post(  # refused at step 3: no Kafka round trip needed
                f"{base}/webhooks/visit-completed?token={secret}",
                content=b"{}",
                headers={"Content-Type": "text/plain"},
            )
        assert response.status_code == 415
    finally:
        ingress.stop()
    log = (tmp_path / "ingress.log").read_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert any(line.get("path") == "/webhooks/visit-completed" for line in lines)  # access line
    assert secret not in log
