"""``INGRESS_WORKERS=2``: two ingress processes on one port, one ``/metrics`` summing both,
every acknowledged event on its topic, and SIGTERM stopping them all."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

import httpx
import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.process import free_port
from events.samples import sample_visit
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.topic_admin import ensure_topics
from tests.helpers import read_topic, wait_until
from tests.integration.test_ingress_process import start_ingress
from tests.services import Services

pytestmark = pytest.mark.integration

ROUTE = "/webhooks/visit-completed"


def workers_of(supervisor: int) -> list[psutil.Process]:
    """uvicorn's worker processes (spawned interpreters) under the supervisor."""
    return [
        child
        for child in psutil.Process(supervisor).children()
        if "spawn_main" in " ".join(child.cmdline())
    ]


def connected_to(process: psutil.Process, port: int) -> bool:
    return any(c.raddr and c.raddr.port == port for c in process.net_connections())


async def post_visits(base: str, run: str, names: range) -> list[str]:
    """POST one visit per name on fresh connections; return the acknowledged event ids."""
    async with httpx.AsyncClient(timeout=15) as client:
        responses = await asyncio.gather(
            *(client.post(base + ROUTE, json=sample_visit(f"gfe_{run}_{n}")) for n in names)
        )
    assert [r.status_code for r in responses] == [200] * len(names)
    return [str(r.json()["event_id"]) for r in responses]


async def scraped(base: str) -> dict[str, float]:
    async with httpx.AsyncClient(timeout=10) as client:
        text = (await client.get(base + "/metrics")).text
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "ingress_requests_total" and sample.labels["route"] == ROUTE:
                out[f"requests_{sample.labels['status']}"] = sample.value
            if sample.name == "ingress_events_total":
                out[f"events_{sample.labels['event']}"] = sample.value
    return out


async def test_two_workers_answer_on_one_port_sum_their_metrics_and_stop_on_sigterm(
    services: Services, tmp_path: Path
) -> None:
    kafka = KafkaSettings(
        bootstrap_servers=[services.kafka_bootstrap],
        topic_prefix=f"w{uuid.uuid4().hex[:8]}.",
        partitions=2,
    )
    await ensure_topics(kafka)
    ingress, base = await start_ingress(
        services,
        tmp_path,
        INGRESS_WORKERS="2",
        INGRESS_ALLOW_UNAUTHENTICATED="true",
        KAFKA_TOPIC_PREFIX=kafka.topic_prefix,
        LOG_FORMAT="json",
    )
    try:
        assert ingress.pid is not None
        workers = workers_of(ingress.pid)
        assert len(workers) == 2
        kafka_port = int(services.kafka_bootstrap.rsplit(":", 1)[1])
        # Serving once its producer is connected (the app's start-up has run).

        async def both_up() -> bool:
            return all(connected_to(w, kafka_port) for w in workers)

        await wait_until(both_up, 60, "both workers connected to Kafka")
        run = uuid.uuid4().hex[:6]
        # Each worker answers a batch alone while the other is paused (SIGSTOP): new
        # connections wait in the shared accept queue for the one that runs. Pauses stay
        # far below uvicorn's 5 s worker health check.
        acknowledged: list[str] = []
        for paused, batch in zip(workers, (range(0, 15), range(15, 30)), strict=True):
            paused.suspend()
            try:
                acknowledged += await post_visits(base, run, batch)
            finally:
                paused.resume()
        # Whichever worker answers the scrape, it reports both workers' requests.
        for _ in range(4):
            figures = await scraped(base)
            assert figures["requests_200"] == 30
            assert figures["events_visit.completed"] == 30
            assert figures["events_treatment.updated"] == 0
        on_topic = await read_topic(
            services.kafka_bootstrap, f"{kafka.topic_prefix}visit-completed"
        )
        ids = [dict(m.headers)["event_id"].decode() for m in on_topic]
        assert sorted(ids) == sorted(acknowledged)  # every 200 durably there, once
    finally:
        ingress.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(ingress.popen.wait, 30)  # type: ignore[union-attr]
    assert code in (0, -signal.SIGTERM)
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]
    log = (tmp_path / "ingress.log").read_text()
    assert "Traceback" not in log


async def test_workers_stop_when_their_supervisor_is_killed_and_free_the_port(
    services: Services, tmp_path: Path
) -> None:
    port = free_port()
    env = {
        "INGRESS_WORKERS": "2",
        "INGRESS_ALLOW_UNAUTHENTICATED": "true",
        "INGRESS_PORT": str(port),
    }
    first, _ = await start_ingress(services, tmp_path / "first", **env)
    assert first.pid is not None
    workers = workers_of(first.pid)
    assert len(workers) == 2
    owned = Path(workers[0].environ()["PROMETHEUS_MULTIPROC_DIR"])
    assert await asyncio.to_thread(owned.is_dir)
    first.kill()  # SIGKILL: the supervisor's clean-up never runs

    async def orphans_gone() -> bool:
        return not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]

    await wait_until(orphans_gone, 8, "orphaned workers exited")
    # The port is free again, and the killed supervisor's metrics folder is removed.
    second, base = await start_ingress(services, tmp_path / "second", **env)
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            assert (await client.get(base + "/healthz")).status_code == 200
        assert not await asyncio.to_thread(owned.exists)
    finally:
        await asyncio.to_thread(second.stop)


async def test_one_worker_writes_metrics_to_an_operator_folder_it_creates_and_leaves(
    services: Services, tmp_path: Path
) -> None:
    folder = tmp_path / "absent" / "metrics"
    ingress, base = await start_ingress(
        services,
        tmp_path,
        INGRESS_WORKERS="1",
        INGRESS_ALLOW_UNAUTHENTICATED="true",
        PROMETHEUS_MULTIPROC_DIR=str(folder),
    )
    try:
        async with httpx.AsyncClient(timeout=10) as client:
            await client.get(base + "/healthz")
            text = (await client.get(base + "/metrics")).text
        assert 'ingress_requests_total{route="/healthz",status="200"}' in text
        assert list(folder.glob("counter_*.db"))
        assert list(folder.glob("gauge_livesum_*.db"))
    finally:
        await asyncio.to_thread(ingress.stop)
    # A clean stop takes its live gauge (requests in flight) out of the shared folder.
    assert not list(folder.glob("gauge_livesum_*.db"))
