"""Every row of the ingress check table, in order, with a real Kafka — and a canary patient
sent through every path that must never surface in a response, a log line or a metric."""

from __future__ import annotations

import base64
import logging
import time
import uuid
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
from pydantic import SecretStr

from devstack.process import free_port
from events.samples import SAMPLES
from ingress import auth
from ingress.app import create_app
from ingress.settings import IngressSettings
from spakinect_pipeline.config import KafkaSettings
from spakinect_pipeline.logs import set_levels
from spakinect_pipeline.topic_admin import ensure_topics
from tests.services import Services

from .test_ingress import client_for

pytestmark = pytest.mark.integration

SECRET = "s3cret-for-tests"
HMAC_SECRET = "whsec_" + base64.b64encode(b"hmac-key-for-tests").decode()
METRICS_TOKEN = "metrics-token"
CANARY_NAME, CANARY_EMAIL = "Zebulon Canarypatient", "zebulon.canary@example.test"
ALLOWED, DENIED = "10.1.2.3", "203.0.113.9"


def canary_body(**changes: object) -> dict[str, object]:
    body = orjson.loads(orjson.dumps(SAMPLES["visit.completed"]))
    body["data"]["gfe_id"] = f"gfe_canary_{uuid.uuid4().hex[:6]}"
    body["data"]["patient_details"] = {
        "name": CANARY_NAME,
        "first_name": "Zebulon",
        "last_name": "Canarypatient",
        "email": CANARY_EMAIL,
    }
    body.update(changes)
    return body


def settings(**changes: object) -> IngressSettings:
    values: dict[str, object] = {
        "shared_secret": SecretStr(SECRET),
        "allowed_cidrs": "10.0.0.0/8",
        "trusted_proxies": "127.0.0.1/32",
        "hmac_secrets": HMAC_SECRET,
        "max_body_bytes": 4096,
        "publish_timeout_s": 2,
        "metrics_token": SecretStr(METRICS_TOKEN),
        **changes,
    }
    return IngressSettings(**values)  # type: ignore[arg-type]


def request_headers(
    body: bytes,
    *,
    address: str = ALLOWED,
    secret: str | None = SECRET,
    content_type: str = "application/json",
    sign: bool = True,
) -> dict[str, str]:
    headers = {
        "X-Forwarded-For": address,
        "Content-Type": content_type,
        "User-Agent": "Spakinect-Webhook/1.0",
    }
    if secret is not None:
        headers["Authorization"] = f"Bearer {secret}"
    if sign:
        stamp = int(time.time())
        headers |= {
            "webhook-id": "msg_1",
            "webhook-timestamp": str(stamp),
            "webhook-signature": auth.sign(HMAC_SECRET, "msg_1", stamp, body),
        }
    return headers


@pytest.fixture(scope="module")
async def kafka(services: Services) -> KafkaSettings:
    kafka = KafkaSettings(
        bootstrap_servers=[services.kafka_bootstrap],
        topic_prefix=f"c{uuid.uuid4().hex[:8]}.",
        partitions=1,
    )
    await ensure_topics(kafka)
    return kafka


@pytest.fixture(autouse=True)
def production_log_levels() -> None:
    """The most verbose production logging (LOG_LEVEL=DEBUG) is what must stay clean."""
    set_levels("DEBUG")


@pytest.fixture
async def client(kafka: KafkaSettings) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(create_app(settings(), kafka)) as c:
        yield c


OVERSIZED = orjson.dumps(canary_body(padding="x" * 5000))
VALID = orjson.dumps(canary_body())

# (name, body, header options, expected status) — each row fails every later check too,
# so the status proves the order in which checks run.
ROWS = [
    (
        "1 address outside the allowlist",
        OVERSIZED,
        {"address": DENIED, "secret": None, "content_type": "text/plain", "sign": False},
        403,
    ),
    (
        "2 secret missing",
        OVERSIZED,
        {"secret": None, "content_type": "text/plain", "sign": False},
        401,
    ),
    ("2 secret wrong", OVERSIZED, {"secret": "nope", "sign": False}, 401),
    ("3 content type", OVERSIZED, {"content_type": "text/plain", "sign": False}, 415),
    ("4 body too large", OVERSIZED, {"sign": False}, 413),
    ("5 signature missing", b"{not json", {"sign": False}, 401),
    ("6 not JSON", b'{"data": "' + CANARY_NAME.encode() + b'" not json', {}, 400),
    ("6 not an object", orjson.dumps([CANARY_NAME]), {}, 400),
    ("6 too deep", b'{"a":' * 40 + b"1" + b"}" * 40, {}, 400),
    ("7 event missing", orjson.dumps({"data": {"patient": CANARY_NAME}}), {}, 400),
    ("7 other event", orjson.dumps(canary_body(event="treatment.updated")), {}, 400),
    ("8 schema", orjson.dumps(canary_body(timestamp=CANARY_EMAIL)), {}, 422),
    ("8 NUL", orjson.dumps(canary_body(note="\x00" + CANARY_NAME)), {}, 422),
    ("ok", VALID, {}, 200),
]


@pytest.mark.parametrize(("name", "body", "options", "status"), ROWS, ids=[r[0] for r in ROWS])
async def test_check_table_row(
    client: httpx.AsyncClient,
    name: str,
    body: bytes,
    options: dict[str, object],
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    response = await client.post(
        "/webhooks/visit-completed", content=body, headers=request_headers(body, **options)
    )  # type: ignore[arg-type]
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert_no_canary(response.text, caplog)
    if status == 422:
        assert all(set(f) == {"field", "error"} for f in response.json()["fields"])


async def test_kafka_not_acking_is_503_even_for_an_authenticated_valid_body(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    dead = KafkaSettings(bootstrap_servers=[f"127.0.0.1:{free_port()}"])
    async with client_for(create_app(settings(retry_after_s=9), dead)) as client:
        started = time.monotonic()
        response = await client.post(
            "/webhooks/visit-completed", content=VALID, headers=request_headers(VALID)
        )
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "9"
    assert time.monotonic() - started < 3
    assert_no_canary(response.text, caplog)


async def test_secret_as_basic_auth_or_query_token_and_metrics_stay_clean(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    basic = base64.b64encode(f"spakinect:{SECRET}".encode()).decode()
    headers = request_headers(VALID, secret=None) | {"Authorization": f"Basic {basic}"}
    assert (
        await client.post("/webhooks/visit-completed", content=VALID, headers=headers)
    ).status_code == 200
    query = await client.post(
        f"/webhooks/visit-completed?token={SECRET}",
        content=VALID,
        headers=request_headers(VALID, secret=None),
    )
    assert query.status_code == 200
    paths = [str(r.__dict__.get("path")) for r in caplog.records if r.getMessage() == "request"]
    assert any(p.startswith("/webhooks/visit-completed") for p in paths)  # the access log ran
    assert SECRET not in logged(caplog)  # the token never reaches a log line

    assert (await client.get("/metrics")).status_code == 401
    metrics = await client.get("/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
    assert metrics.status_code == 200
    assert 'ingress_requests_total{route="/webhooks/visit-completed",status="200"}' in metrics.text
    for secret_or_phi in (SECRET, CANARY_NAME, CANARY_EMAIL, "Zebulon"):
        assert secret_or_phi not in metrics.text


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every record's message and fields: ``caplog.text`` leaves out the ``extra=`` ones."""
    return " ".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)


def assert_no_canary(text: str, caplog: pytest.LogCaptureFixture) -> None:
    records = logged(caplog)
    for needle in (CANARY_NAME, CANARY_EMAIL, "Zebulon", "Canarypatient"):
        assert needle not in text, f"{needle!r} in the response"
        assert needle not in records, f"{needle!r} in a log record"
