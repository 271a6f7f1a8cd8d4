"""What the Kafka and Postgres failure classifiers share: walking an exception's causes,
TLS verify messages that mean a host mismatch, and the one wording of a problem."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

# OpenSSL's verify messages for a certificate issued to another name or address.
HOST_MISMATCH = ("Hostname mismatch", "IP address mismatch")


def exception_chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc``, then its causes and contexts, each once."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def describe(service: str, summary: str, detail: str, check: Sequence[str]) -> str:
    """``<service> <summary> (<detail>): check <settings>`` — never a setting's value."""
    text = f"{service} {summary}"
    if detail:
        text += f" ({detail})"
    if check:
        text += ": check " + ", ".join(check)
    return text
