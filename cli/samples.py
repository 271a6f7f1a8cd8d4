"""``send-sample``: post the vendor's sample events to a running ingress, like Spakinect does."""

from __future__ import annotations

import os

import httpx

from events.registry import EVENT_TYPES


def default_url() -> str:
    """INGRESS_URL, else the local default; ``make send-sample`` sets it from the running stack."""
    return os.environ.get("INGRESS_URL") or "http://127.0.0.1:8000"


def send_samples(url: str | None, token: str | None) -> int:
    """Post each sample; print status and body; return a process exit code."""
    base = (url or default_url()).rstrip("/")
    headers = {"Content-Type": "application/json", "User-Agent": "Spakinect-Webhook/1.0"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    failures = 0
    with httpx.Client(timeout=10) as client:
        for event, event_type in EVENT_TYPES.items():
            try:
                response = client.post(
                    base + event_type.route, json=event_type.sample, headers=headers
                )
            except httpx.HTTPError as exc:
                print(f"{event}: could not reach {base} ({type(exc).__name__})")
                failures += 1
                continue
            print(f"{event}: {response.status_code} {response.text}")
            failures += response.status_code != 200
    return 1 if failures else 0
