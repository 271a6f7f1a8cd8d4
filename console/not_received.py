"""What a lookup says when nothing with the id arrived: plainly so, what was read, what to check.

The window is the part of the raw topic a lookup reads for the id (its key's
partition, the newest :data:`console.kafka_view.SCAN_LIMIT` messages): an id
sent before it is not seen, so the page says how far back that is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from console.kafka_view import SCAN_LIMIT, KafkaView, partition_for
from events.topics import Topics


@dataclass(frozen=True, slots=True)
class Window:
    topic: str
    partition: int
    messages: int  # read from the partition
    since: datetime | None  # the oldest message read
    whole: bool  # all the partition still holds


async def raw_window(view: KafkaView, topics: Topics, event: str, entity: str) -> Window | None:
    """The raw topic's window a lookup of ``entity`` reads; None for an unknown event type."""
    topic = topics.raw_for(event)
    tps = await view.partitions(topic) if topic else []
    if topic is None or not tps:
        return None
    partition = partition_for(entity.encode(), len(tps))
    end = await view.offset_at(topic, partition, 2**62)
    begin = await view.beginning(topic, partition)
    start = max(begin, end - SCAN_LIMIT)
    first = await view.read(topic, partition, start, limit=1)
    return Window(topic, partition, end - start, first[0].at if first else None, start <= begin)


def read_what(window: Window | None) -> str:
    """The window, in words."""
    if window is None:
        return "no raw topic was read (an event type this pipeline does not route)"
    if not window.messages:
        return f"{window.topic} partition {window.partition} holds no message"
    since = f"{window.since:%Y-%m-%d %H:%M:%S} UTC" if window.since else "?"
    held = "all it holds" if window.whole else "older ones were not read"
    return (
        f"{window.topic} partition {window.partition}: its {window.messages} message(s) "
        f"since {since} were read ({held})"
    )


def checks(kind: str, window: Window | None) -> list[str]:
    """What an operator can check next."""
    out = [
        f"the {kind} exactly as the vendor sent it: ids are matched exactly, case included",
        "whether the vendor's request got a 2xx: a body the ingress refused is kept under "
        "Refused bodies, whose list shows each one's event type and entity id",
    ]
    if kind != "event_id":
        other = {"gfe_id": "treatment_id", "treatment_id": "gfe_id"}.get(kind)
        if other:
            out.append(f"whether it is a {other} (choose that kind in the lookup)")
    if window is not None and window.since is not None:
        out.append(
            f"whether it was sent before {window.since:%Y-%m-%d %H:%M} UTC: "
            "older deliveries are outside what was read (or past the topic's retention)"
        )
    return out
