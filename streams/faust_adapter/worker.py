"""Faust's worker, except that a requested stop ends the process within a budget.

With Kafka unreachable, Faust's shutdown waits for its consumer and producer
to stop, which never happens: a SIGTERM during an outage would leave the
process hanging until something SIGKILLs it. Exiting anyway loses nothing,
since events are acked only after their work is done; the partitions' next
owner repeats what was not.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

import faust

log = logging.getLogger(__name__)


class BoundedStopWorker(faust.Worker):
    """Ends the process ``shutdown_timeout_s`` after SIGTERM/SIGINT, stopped or not."""

    def __init__(self, app: faust.App, *, shutdown_timeout_s: float, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self.shutdown_timeout_s = shutdown_timeout_s
        self._watchdog: threading.Timer | None = None

    def _schedule_shutdown(self, sig: signal.Signals) -> None:  # mode's hook for SIGTERM/INT
        super()._schedule_shutdown(sig)
        if self._watchdog is None:
            self._watchdog = threading.Timer(self.shutdown_timeout_s, self._give_up)
            self._watchdog.daemon = True
            self._watchdog.start()

    def _give_up(self) -> None:
        log.error(
            "shutdown did not finish in %.0fs (is Kafka reachable?); exiting without it",
            self.shutdown_timeout_s,
        )
        logging.shutdown()
        os._exit(1)
