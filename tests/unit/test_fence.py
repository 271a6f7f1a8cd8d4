"""The partition fence (streams.fence): a revoke drains, then fences what still runs."""

import asyncio

import pytest

from streams.fence import Fence, Revoked

TP0, TP1 = ("spakinect.visits", 0), ("spakinect.visits", 1)


async def test_a_batch_past_the_bound_is_fenced_and_its_next_write_refused() -> None:
    fence = Fence()
    fence.assign([TP0, TP1])
    lease = fence.lease([TP0])
    assert await fence.revoke({TP0}, bound_s=0.05) == [lease]
    with pytest.raises(Revoked, match=r"spakinect\.visits"):
        lease.check()
    assert fence.lease([TP1]).valid  # a partition not revoked is untouched


async def test_no_batch_of_a_draining_partition_starts() -> None:
    fence = Fence()
    fence.assign([TP0])
    running = fence.lease([TP0])
    revoking = asyncio.ensure_future(fence.revoke({TP0}, bound_s=5))
    await asyncio.sleep(0.01)
    late = fence.lease([TP0])  # taken while the revoke waits for ``running``
    assert not late.valid
    assert running.valid
    fence.release(late)
    fence.release(running)
    assert await revoking == []
    assert not running.valid


async def test_a_partition_given_back_starts_a_new_epoch() -> None:
    fence = Fence()
    fence.assign([TP0])
    old = fence.lease([TP0])
    await fence.revoke({TP0}, bound_s=0)
    fence.assign([TP0])
    assert not old.valid  # a batch from before the revoke stays fenced
    assert fence.lease([TP0]).valid


def test_busy_while_a_batch_holds_a_lease() -> None:
    fence = Fence()
    fence.assign([TP0])
    lease = fence.lease([TP0])
    assert fence.busy
    fence.release(lease)
    assert not fence.busy
