"""Fuzz the ingress HTTP layer: no input may cause a 5xx (publishing is a recording stub).

Two generators: hypothesis for raw bodies and headers (random bytes, deep nesting,
huge arrays, odd unicode, NUL, wrong content types), and schemathesis for
schema-shaped bodies from the app's own OpenAPI document. FUZZ_EXAMPLES scales it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import orjson
import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from events.samples import SAMPLES
from ingress.app import create_app
from ingress.settings import IngressSettings
from spakinect_pipeline.config import KafkaSettings
from tests.helpers import RecordingPublisher

# Per generator (and per operation for schemathesis); CI runs the default: > 5,000 cases.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "1500"))
ROUTES = ["/webhooks", "/webhooks/visit-completed", "/webhooks/treatment-updated"]
CASES = {"count": 0}


def make_app():  # type: ignore[no-untyped-def]
    return create_app(
        IngressSettings(allow_unauthenticated=True, max_body_bytes=64 * 1024),
        KafkaSettings(),
        publisher=RecordingPublisher(),
    )


@pytest.fixture(scope="module", autouse=True)
def report_case_count() -> Iterator[None]:
    yield
    print(f"\nfuzz cases run: {CASES['count']}")
    assert CASES["count"] >= 2 * EXAMPLES  # both generators really ran (3 POST operations)


@pytest.fixture(scope="module")
def client() -> Iterator[TestClient]:
    with TestClient(make_app()) as test_client:
        yield test_client


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(alphabet=st.characters(codec="utf-8")),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5)
    ),
    max_leaves=40,
)


def deep(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def mutated_sample(value: object, key: str) -> bytes:
    body = orjson.loads(orjson.dumps(SAMPLES["visit.completed"]))
    body["data"][key] = value
    return orjson.dumps(body)


bodies = st.one_of(
    st.binary(max_size=2048),
    json_values.map(orjson.dumps),
    st.integers(min_value=1, max_value=3000).map(deep),
    st.integers(min_value=0, max_value=100_000).map(lambda n: b"[" + b"1," * n + b"1]"),
    st.tuples(json_values, st.sampled_from(list(SAMPLES["visit.completed"]["data"]))).map(
        lambda pair: mutated_sample(*pair)
    ),
    st.text().map(lambda t: orjson.dumps({"event": "visit.completed", "data": {"gfe_id": t}})),
    st.just(b'{"event": "visit.completed", "x": "\\u0000"}'),
)
content_types = st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "APPLICATION/JSON",
        "text/plain",
        "application/x-www-form-urlencoded",
        "",
        "application/json;;;",
        "multipart/form-data",
    ]
)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
@given(route=st.sampled_from(ROUTES), body=bodies, content_type=content_types)
def test_raw_bodies_never_cause_a_server_error(
    client: TestClient, route: str, body: bytes, content_type: str
) -> None:
    CASES["count"] += 1
    response = client.post(route, content=body, headers={"Content-Type": content_type})
    assert response.status_code in (200, 400, 413, 415, 422), response.text
    assert response.headers["content-type"].startswith("application/json")


schema = schemathesis.openapi.from_asgi("/openapi.json", make_app())


@schema.parametrize()
@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
def test_openapi_generated_requests_never_cause_a_server_error(case) -> None:  # type: ignore[no-untyped-def]
    CASES["count"] += 1
    response = case.call()
    assert response.status_code < 500, response.text
