"""The bare route: what FastAPI alone costs for the vendor's visit payload.

One route, the pydantic model of the ``visit.completed`` payload as its body,
a JSON answer; no auth, no size or depth checks, no publish, no metrics, no
logs. Served exactly as the ingress is (:func:`ingress.app.serve`'s uvicorn
settings), so the ingress benchmark's ratios a/c and b/c say what our own
HTTP path costs on top of the framework.

    python -m bench.bare_ingress --port 8002
"""

from __future__ import annotations

import argparse

from fastapi import FastAPI

from events.payloads import VisitCompleted, make_event_id


def create_bare_app() -> FastAPI:
    app = FastAPI()

    @app.post("/webhooks/visit-completed")
    async def visit_completed(body: VisitCompleted) -> dict[str, object]:
        event_id = make_event_id(body.event, body.data.gfe_id, body.timestamp)
        return {"received": True, "event_id": event_id}

    @app.get("/readyz")
    async def readyz() -> dict[str, bool]:
        return {"ready": True}

    return app


def main() -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.run(
        create_bare_app(),
        host="127.0.0.1",
        port=args.port,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        proxy_headers=False,
    )


if __name__ == "__main__":
    main()
