"""The real ingress app with publishing replaced by a no-op: the HTTP stack's ceiling.

Run exactly as ``spakinect-pipeline ingress`` runs the real one (uvicorn,
uvloop, httptools, no access log), so the two differ only in the publish.

    python -m bench.noop_ingress --port 8001
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

from ingress.app import create_app, serve
from ingress.settings import IngressSettings
from spakinect_pipeline.config import KafkaSettings, LogSettings, load_settings
from spakinect_pipeline.logs import configure_logging
from spakinect_pipeline.publisher import Headers, Message, Written


class NoopPublisher:
    """Acknowledges every message at once without sending it anywhere."""

    last_metadata_ok: float | None = None

    async def start(self) -> None:
        self.last_metadata_ok = time.monotonic()

    async def stop(self) -> None: ...

    async def publish(
        self,
        topic: str,
        value: bytes | None,
        *,
        key: bytes | None,
        headers: Headers = (),
        timeout: float,
    ) -> None:
        return None

    async def publish_many(
        self, messages: Sequence[Message], *, timeout: float
    ) -> Sequence[Written]:
        return ()

    async def refresh_metadata(self, topics: Sequence[str], timeout: float = 5.0) -> bool:
        self.last_metadata_ok = time.monotonic()
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    configure_logging(load_settings(LogSettings))  # as deployed: every request logs a line
    settings = load_settings(IngressSettings, port=args.port)
    app = create_app(settings, load_settings(KafkaSettings), publisher=NoopPublisher())
    serve(app, settings)


if __name__ == "__main__":
    main()
