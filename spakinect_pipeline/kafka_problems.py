"""What a Kafka client's failure means for an operator, and which setting to check.

aiokafka reports most connection failures as ``KafkaConnectionError("Unable to
bootstrap from …")`` whatever the cause: a wrong SASL password, a CA that does
not trust the broker and a stopped broker read the same. :func:`classify` is
the one place that turns an exception (and its causes) into a
:class:`KafkaProblem` naming the settings to check, never their values;
:func:`underlying_error` finds the cause aiokafka dropped by opening one
connection the way its clients do.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from dataclasses import dataclass

from aiokafka.conn import collect_hosts, create_conn
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    IllegalSaslStateError,
    KafkaConnectionError,
    KafkaError,
    RequestTimedOutError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
    UnsupportedSaslMechanismError,
)

from spakinect_pipeline.config import ConfigError, KafkaSettings
from spakinect_pipeline.problems import HOST_MISMATCH, describe, exception_chain

AUTHORIZATION_ERRORS = (
    TopicAuthorizationFailedError,
    GroupAuthorizationFailedError,
    ClusterAuthorizationFailedError,
    TransactionalIdAuthorizationFailed,
)


@dataclass(frozen=True, slots=True)
class KafkaProblem:
    """One failure in an operator's words: what happened, which settings to check."""

    summary: str
    check: tuple[str, ...] = ()
    detail: str = ""
    settings_wrong: bool = False  # retrying cannot help until a setting (or an ACL) changes

    def __str__(self) -> str:
        return describe("Kafka", self.summary, self.detail, self.check)


class KafkaRefused(ConfigError):
    """Kafka refused our credentials, certificate or permissions: a setting must change."""


def classify(exc: BaseException) -> KafkaProblem:
    """The problem ``exc`` (or one of its causes) stands for. Pure: reads only the exceptions.

    Details come from the exception's type and, for TLS, OpenSSL's verify
    message (host names and reasons, never credentials).
    """
    for error in exception_chain(exc):
        problem = _classify_one(error)
        if problem is not None:
            return problem
    if any(isinstance(e, TimeoutError | RequestTimedOutError) for e in exception_chain(exc)):
        return KafkaProblem(
            "did not answer in time",
            ("KAFKA_BOOTSTRAP_SERVERS", "the brokers' health"),
            type(exc).__name__,
        )
    if isinstance(exc, KafkaConnectionError | OSError):
        return KafkaProblem(
            "not reachable",
            ("KAFKA_BOOTSTRAP_SERVERS", "KAFKA_SECURITY_PROTOCOL", "the network"),
            type(exc).__name__,
        )
    return KafkaProblem("error", (), type(exc).__name__)


def _classify_one(error: BaseException) -> KafkaProblem | None:
    if isinstance(error, SaslAuthenticationFailed):
        return KafkaProblem(
            "authentication failed",
            ("KAFKA_SASL_USERNAME", "KAFKA_SASL_PASSWORD", "KAFKA_SASL_MECHANISM"),
            "SASL credentials refused",
            settings_wrong=True,
        )
    if isinstance(error, UnsupportedSaslMechanismError):
        return KafkaProblem(
            "does not accept this SASL mechanism",
            ("KAFKA_SASL_MECHANISM",),
            settings_wrong=True,
        )
    if isinstance(error, IllegalSaslStateError):
        return KafkaProblem(
            "listener does not expect SASL",
            ("KAFKA_SECURITY_PROTOCOL", "KAFKA_BOOTSTRAP_SERVERS"),
            settings_wrong=True,
        )
    if isinstance(error, AUTHORIZATION_ERRORS):
        return KafkaProblem(
            "refused the operation: not authorized",
            ("the ACLs of the principal KAFKA_SASL_USERNAME names (docs/managed-services.md)",),
            type(error).__name__,
            settings_wrong=True,
        )
    if isinstance(error, ssl.SSLCertVerificationError):
        reason = str(
            getattr(error, "verify_message", None)
            or getattr(error, "reason", None)
            or "verification failed"
        )
        if reason.startswith(HOST_MISMATCH):
            return KafkaProblem(
                "certificate does not match the broker's address",
                ("KAFKA_BOOTSTRAP_SERVERS (use the names on the brokers' certificates)",),
                reason,
                settings_wrong=True,
            )
        return KafkaProblem(
            "certificate not trusted",
            ("KAFKA_SSL_CAFILE (the CA bundle that signed the brokers' certificates)",),
            reason,
            settings_wrong=True,
        )
    if isinstance(error, ssl.SSLError):
        return KafkaProblem(
            "TLS handshake failed",
            ("KAFKA_SECURITY_PROTOCOL", "KAFKA_SSL_CERTFILE", "KAFKA_SSL_KEYFILE"),
            str(getattr(error, "reason", None) or type(error).__name__),
            settings_wrong=True,
        )
    return None


async def underlying_error(
    exc: BaseException, kafka: KafkaSettings, timeout: float = 3.0
) -> BaseException:
    """For aiokafka's bare "Unable to bootstrap", the error a direct connection gets; else ``exc``.

    Costs a connection attempt per bootstrap server, so only for failures, and
    bounded by ``timeout``. The error found is chained to ``exc``.
    """
    bare = isinstance(exc, KafkaConnectionError) and not classify(exc).settings_wrong
    if not bare:
        return exc
    found = await wrong_setting_error(kafka, timeout)
    if found is None:
        return exc
    found.__cause__ = exc
    return found


async def wrong_setting_error(kafka: KafkaSettings, timeout: float = 3.0) -> BaseException | None:
    """Connect to each bootstrap server as the clients do; the first error a setting explains.

    None when every server took the connection, or failed only in ways
    retrying can mend (unreachable, slow), or ``timeout`` passed.
    """
    options = kafka.client_options()
    options.pop("bootstrap_servers")
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(timeout):
            for host, port, _family in collect_hosts(kafka.bootstrap_servers, randomize=False):
                try:
                    connection = await create_conn(host, port, client_id="diagnosis", **options)
                except (KafkaError, OSError) as error:
                    failure: BaseException = error
                    if classify(failure).settings_wrong:
                        return failure
                else:
                    connection.close()
    return None


def refused(exc: BaseException) -> KafkaRefused | None:
    """A :class:`KafkaRefused` to stop start-up with, when ``exc`` means a setting is wrong."""
    problem = classify(exc)
    return KafkaRefused(str(problem)) if problem.settings_wrong else None
