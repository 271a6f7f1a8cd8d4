"""What a failed Postgres connection means for an operator, and which part of the DSN to check.

asyncpg reports a CA that does not trust the server as a bare
``SSLCertVerificationError`` and a TLS-only server's refusal of a plaintext
connection as ``InvalidAuthorizationSpecificationError`` ("no pg_hba.conf
entry …"); our log lines named only the class. :func:`classify` is the one
place that turns such an exception (or one of its causes) into a
:class:`PostgresProblem` naming the ``POSTGRES_DSN`` parameter to check —
never its value: the DSN holds the password.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass

import asyncpg

from spakinect_pipeline.problems import HOST_MISMATCH, describe, exception_chain

DSN = "POSTGRES_DSN"


@dataclass(frozen=True, slots=True)
class PostgresProblem:
    """One failure in an operator's words: what happened, which DSN parts to check."""

    summary: str
    check: tuple[str, ...] = ()
    detail: str = ""
    settings_wrong: bool = True  # retrying cannot help until the DSN (or the server) changes

    def __str__(self) -> str:
        return describe("Postgres", self.summary, self.detail, self.check)


def _tls(exc: ssl.SSLError) -> PostgresProblem:
    if isinstance(exc, ssl.SSLCertVerificationError):
        reason = str(exc.verify_message or "certificate verify failed")
        if reason.startswith(HOST_MISMATCH):
            return PostgresProblem(
                "certificate does not match the server's address",
                (f"{DSN}'s host (use the name on the server's certificate)",),
                reason,
            )
        return PostgresProblem(
            "certificate not trusted",
            (f"{DSN}'s sslrootcert (the CA bundle that signed the server's certificate)",),
            reason,
        )
    return PostgresProblem(
        "TLS handshake failed",
        (f"{DSN}'s sslmode, sslrootcert, sslcert, sslkey",),
        str(exc.reason or type(exc).__name__),
    )


def _server(exc: asyncpg.PostgresError) -> PostgresProblem | None:
    code = str(getattr(exc, "sqlstate", "") or "")
    message = str(getattr(exc, "message", None) or exc)
    if code == "28000" and message.endswith("no encryption"):
        return PostgresProblem(
            "refused a connection without TLS",
            (f"{DSN}'s sslmode (verify-full, with sslrootcert)",),
            "the server accepts TLS connections only",
        )
    if code == "28000":
        return PostgresProblem(
            "refused this client (no pg_hba.conf entry)",
            (f"{DSN}'s user and database", "the server's allowed addresses"),
        )
    if code == "28P01":
        return PostgresProblem(
            "authentication failed (password refused)", (f"{DSN}'s user and password",)
        )
    if code == "3D000":
        return PostgresProblem("database does not exist", (f"{DSN}'s database name",))
    return None


def classify(exc: BaseException) -> PostgresProblem | None:
    """The connection problem ``exc`` (or a cause) stands for; None for anything else.

    Pure: reads only the exceptions. Details are OpenSSL's verify reason or
    our own words; the server's messages (which quote user and database
    names) are not repeated.
    """
    for error in exception_chain(exc):
        if isinstance(error, ssl.SSLError):
            return _tls(error)
        if isinstance(error, asyncpg.PostgresError):
            return _server(error)
        if isinstance(error, asyncpg.exceptions.ClientConfigurationError):
            return PostgresProblem(
                "TLS settings unusable",
                (f"{DSN}'s sslrootcert (a readable PEM file)",),
                "no CA file given, and the default one is missing"
                if "root certificate" in str(error)
                else type(error).__name__,
            )
        if isinstance(error, FileNotFoundError | PermissionError | IsADirectoryError):
            return PostgresProblem(
                "TLS files cannot be read",
                (f"{DSN}'s sslrootcert, sslcert, sslkey (readable PEM files)",),
                type(error).__name__,
            )
        if isinstance(error, ConnectionError) and "rejected SSL upgrade" in str(error):
            return PostgresProblem(
                "does not offer TLS",
                (f"{DSN}'s host and port", f"{DSN}'s sslmode"),
                "the server rejected the TLS upgrade",
            )
        if isinstance(error, OSError | TimeoutError):
            return PostgresProblem(
                "not reachable",
                (f"{DSN}'s host and port", "the network"),
                type(error).__name__,
                settings_wrong=False,
            )
    return None
