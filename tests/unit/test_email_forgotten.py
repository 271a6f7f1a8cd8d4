"""The email stage never sends a forgotten patient's visit, and waits when it cannot tell."""

from collections.abc import Sequence

import pytest

from events.envelope import Disposition, Record
from sinks.base import RetryableError
from sinks.email.forgotten import SkipForgotten, subjects

from .test_rows import rec, visit


class FakeMarkers:
    def __init__(self, forgotten: set[str], fail: bool = False) -> None:
        self.forgotten_ids = forgotten
        self.fail = fail
        self.asked: list[tuple[str | None, list[str]]] = []

    async def forgotten(self, gfe_id: str | None, emails: Sequence[str]) -> bool:
        self.asked.append((gfe_id, list(emails)))
        if self.fail:
            raise RetryableError("erasure markers unreadable (OSError)")
        return gfe_id in self.forgotten_ids

    async def stop(self) -> None: ...


class FakeSink:
    name = "email"

    def __init__(self) -> None:
        self.written: list[Record] = []

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def write(self, batch: Sequence[Record]) -> None:
        self.written.extend(batch)


def test_subjects_are_the_gfe_id_and_the_patient_email():
    assert subjects(rec(visit(1))) == ("gfe_abc123xyz789", ["jane.smith@example.com"])
    failed = {"event": "visit.completed", "timestamp": 1, "success": False, "data": {"gfe_id": "g"}}
    assert subjects(rec(failed, Disposition.UNSUCCESSFUL)) == ("g", [])


async def test_forgotten_visits_are_skipped_and_counted_others_sent():
    inner, markers = FakeSink(), FakeMarkers({"gfe_gone"})
    sink = SkipForgotten(inner, markers)
    await sink.write([rec(visit(1, gfe_id="gfe_gone")), rec(visit(1, gfe_id="gfe_kept"))])
    assert [r.envelope.entity_id for r in inner.written] == ["gfe_kept"]
    assert sink.skipped == 1
    await sink.write([rec(visit(2, gfe_id="gfe_gone"))])
    assert len(inner.written) == 1
    assert sink.skipped == 2


async def test_unreadable_markers_send_nothing_and_ask_for_a_retry():
    inner = FakeSink()
    sink = SkipForgotten(inner, FakeMarkers(set(), fail=True))
    with pytest.raises(RetryableError):
        await sink.write([rec(visit(1))])
    assert inner.written == []
