"""Inject one gray fault for a while, then end it; note what the stack showed meanwhile.

``pause``: a service SIGSTOPped with its children, then SIGCONT. ``stall``: the
SMTP relay swapped for one that accepts and never answers. ``fill``: the
service's data directory (a size-limited tmpfs) filled to the last block, then
freed. ``partition``: the ingress's link to Kafka cut (``chaos.netns``), then
restored. The
supervisor restarts any pipeline process that exits during the run; a service
that died of the fault is restarted once the fault ends: both count as
restarts needed.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from chaos.faults import fill, free_space
from chaos.stack import ChaosStack
from streams.probes import CHECK_TIMEOUT_S, REUSE_S


def probe_after(target: str) -> float:
    """When the stage's ``/readyz`` must have seen the fault: past the time a worker reuses
    a check's result (the relay's for 15 s, so as not to greet it on every probe) and the
    check's own bound, with a margin; the ingress has no such reuse."""
    dependency = {"postgres": "postgres", "smtp": "smtp"}.get(target)
    return REUSE_S[dependency] + CHECK_TIMEOUT_S + 1.5 if dependency else 5.0


async def _keep_full(mount: Path, seen: dict[str, Any]) -> None:
    """Take back, every 0.5 s, whatever the service freed; note the most it had meanwhile."""
    seen["most_free_bytes_while_full"] = 0
    while True:
        free = free_space(mount)
        seen["most_free_bytes_while_full"] = max(seen["most_free_bytes_while_full"], free)
        await asyncio.to_thread(fill, mount)
        await asyncio.sleep(0.5)


def data_mount(service: str, root: Path) -> Path:
    """Where ``service`` keeps its data under a chaos stack's ``root`` (devstack layout)."""
    return {"kafka": root / "kafka" / "log", "postgres": root / "postgres" / "pgdata"}[service]


async def inject(stack: ChaosStack, fault: str, target: str, seconds: float) -> dict[str, Any]:
    """Run the fault for ``seconds``; return what was seen, ``fault_ended`` (monotonic) with it."""
    seen: dict[str, Any] = {}
    if fault == "pause":
        stack.pause(target)
    elif fault == "stall":
        await stack.stall_smtp()
    elif fault == "fill":
        filler = fill(data_mount(target, stack.root))
        keep_full = asyncio.create_task(_keep_full(filler.parent, seen))
    elif fault == "partition" and stack.partition:
        await asyncio.to_thread(stack.partition.cut)
    else:
        raise ValueError(f"unknown gray fault {fault!r}")
    started = time.monotonic()
    await asyncio.sleep(min(probe_after(target), seconds))
    stage = "postgres" if target == "postgres" else "email" if target == "smtp" else "ingress"
    seen[f"{stage}_readyz_during_fault"] = (await asyncio.to_thread(stack.readyz, stage))[0]
    await asyncio.sleep(max(0.0, seconds - (time.monotonic() - started)))
    if fault == "pause":
        stack.pause(target, resume=True)
    elif fault == "stall":
        seen["stalled_smtp_connections"] = stack.stalled_smtp.accepted
        await stack.unstall_smtp()
    elif fault == "fill":
        keep_full.cancel()
        filler.unlink()
        await stack.revive(target)  # a broker that shut down on the full disk: by hand
    elif stack.partition:
        await asyncio.to_thread(stack.partition.restore)
    seen["fault_ended"] = time.monotonic()
    return seen
