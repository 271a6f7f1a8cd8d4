"""A webhook POST skips FastAPI's routing and dependency solving, and nothing else changes:
its route label, the root path behind a proxy, 405 for other methods, the error middleware."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from events.samples import SAMPLES
from ingress.app import create_app
from ingress.context import get_context
from ingress.router import route_path
from ingress.settings import IngressSettings
from spakinect_pipeline.config import KafkaSettings
from tests.helpers import RecordingPublisher

VISIT = "/webhooks/visit-completed"


def app_with(publisher: RecordingPublisher, **settings: object) -> TestClient:
    options = IngressSettings(allow_unauthenticated=True, **settings)  # type: ignore[arg-type]
    return TestClient(create_app(options, KafkaSettings(), publisher=publisher))


def test_a_webhook_post_does_not_go_through_fastapis_dependency_solving() -> None:
    """The route's ``Ctx`` dependency, overridden to fail, is never solved for a webhook."""
    publisher = RecordingPublisher()
    client = app_with(publisher)

    async def no_dependencies() -> None:
        raise AssertionError("FastAPI solved the webhook's dependencies")

    client.app.dependency_overrides[get_context] = no_dependencies  # type: ignore[attr-defined]
    with client:
        for path in (VISIT, "/webhooks"):
            assert client.post(path, json=SAMPLES["visit.completed"]).status_code == 200
        # /readyz is FastAPI's: its dependency is solved, so the override is what fails it
        with pytest.raises(AssertionError, match="solved"):
            client.get("/readyz")
    assert [topic for topic, *_ in publisher.messages] == ["spakinect.visit-completed"] * 2


def test_the_requests_metric_keeps_its_route_label_and_statuses() -> None:
    with app_with(RecordingPublisher()) as client:
        assert client.post(VISIT, json=SAMPLES["visit.completed"]).status_code == 200
        assert client.post(VISIT, json={"event": "visit.completed"}).status_code == 422
        metrics = client.get("/metrics").text
    assert f'ingress_requests_total{{route="{VISIT}",status="200"}} 1.0' in metrics
    assert f'ingress_requests_total{{route="{VISIT}",status="422"}} 1.0' in metrics


def test_other_methods_and_paths_still_get_fastapis_answers() -> None:
    with app_with(RecordingPublisher()) as client:
        assert client.get(VISIT).status_code == 405
        assert client.put("/webhooks", json={}).status_code == 405
        assert client.post("/webhooks/nothing-here", json={}).status_code == 404


def test_behind_a_proxy_the_root_path_prefix_is_matched() -> None:
    publisher = RecordingPublisher()
    with app_with(publisher, root_path="/hooks") as client:
        response = client.post(f"/hooks{VISIT}", json=SAMPLES["visit.completed"])
    assert response.status_code == 200
    assert len(publisher.messages) == 1


@pytest.mark.parametrize(
    ("path", "root", "expected"),
    [
        ("/webhooks", "", "/webhooks"),
        ("/hooks/webhooks", "/hooks", "/webhooks"),
        ("/hooksy/webhooks", "/hooks", "/hooksy/webhooks"),  # a prefix of a segment is not it
        ("/webhooks", "/hooks", "/webhooks"),  # a proxy that already stripped it
    ],
)
def test_route_path_strips_the_root_path_as_starlette_does(
    path: str, root: str, expected: str
) -> None:
    assert route_path({"path": path, "root_path": root}) == expected


class BuggyPublisher(RecordingPublisher):
    async def publish(self, *args: Any, **kwargs: Any) -> None:
        raise RuntimeError("a bug, not a Kafka failure")


def test_a_bug_in_the_handler_is_a_plain_500_and_still_counted() -> None:
    """Starlette's error middleware still wraps the dispatch: no traceback reaches the sender."""
    app = create_app(
        IngressSettings(allow_unauthenticated=True), KafkaSettings(), publisher=BuggyPublisher()
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.post(VISIT, json=SAMPLES["visit.completed"])
        metrics = client.get("/metrics").text
    assert response.status_code == 500
    assert "a bug" not in response.text
    assert f'ingress_requests_total{{route="{VISIT}",status="500"}} 1.0' in metrics
