"""The ingress's answers that depend on its publisher, with the in-memory one: a refused body
that cannot be kept, readiness as the age of the last metadata fetch, and the access line."""

from __future__ import annotations

import json
import logging
import time

import pytest
from fastapi.testclient import TestClient

from events.samples import SAMPLES
from ingress.app import READY_WITHIN_S, create_app
from ingress.settings import IngressSettings
from spakinect_pipeline.config import KafkaSettings, LogSettings
from spakinect_pipeline.logs import configure_logging
from tests.helpers import RecordingPublisher


def client_with(publisher: RecordingPublisher) -> TestClient:
    settings = IngressSettings(allow_unauthenticated=True, retry_after_s=7)
    return TestClient(create_app(settings, KafkaSettings(), publisher=publisher))


@pytest.mark.parametrize(
    ("body", "refused_as"),
    [(b"{not json", 400), (b'{"event": "visit.completed", "data": {}}', 422)],
)
def test_a_refused_body_that_cannot_be_kept_is_503_not_4xx(body: bytes, refused_as: int) -> None:
    """The sender must retry: a 4xx would make it drop a body we do not hold."""
    headers = {"Content-Type": "application/json"}
    kept = RecordingPublisher()
    with client_with(kept) as client:
        assert client.post(
            "/webhooks/visit-completed", content=body, headers=headers
        ).status_code == (refused_as)
    assert [topic for topic, *_ in kept.messages] == ["spakinect.rejected"]

    with client_with(RecordingPublisher(fail=True)) as client:
        response = client.post("/webhooks/visit-completed", content=body, headers=headers)
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "7"
    assert response.json()["error"] == "kafka_unavailable"


@pytest.mark.parametrize(
    ("age_s", "status"),
    [(1.0, 200), (READY_WITHIN_S - 1, 200), (READY_WITHIN_S + 1, 503), (600.0, 503)],
)
def test_readyz_follows_the_age_of_the_last_metadata_fetch(age_s: float, status: int) -> None:
    publisher = RecordingPublisher(metadata_at=time.monotonic() - age_s)
    with client_with(publisher) as client:
        response = client.get("/readyz")
    assert response.status_code == status
    assert response.json()["ready"] is (status == 200)


def test_readyz_is_503_before_any_metadata_was_fetched() -> None:
    with client_with(RecordingPublisher(fail=True)) as client:
        assert client.get("/readyz").status_code == 503
    assert READY_WITHIN_S == 30.0  # the contract's number


def test_the_access_line_names_the_event_and_topic_of_stored_events_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    configure_logging(LogSettings(format="json", level="INFO"))
    try:
        with client_with(RecordingPublisher()) as client:
            stored = client.post("/webhooks/visit-completed", json=SAMPLES["visit.completed"])
            refused = client.post("/webhooks/visit-completed", json={"event": "visit.completed"})
            not_json = client.post(
                "/webhooks/visit-completed",
                content=b"{not json",
                headers={"Content-Type": "application/json"},
            )
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    assert [stored.status_code, refused.status_code, not_json.status_code] == [200, 422, 400]
    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    access = [line for line in lines if line["event"] == "request"]
    assert [line["status"] for line in access] == [200, 422, 400]
    assert access[0]["event_id"] == stored.json()["event_id"]
    assert access[0]["topic"] == "spakinect.visit-completed"
    for line in access[1:]:
        assert "event_id" not in line
        assert "topic" not in line
