"""``check-config PROCESS``: read and validate a process's settings as it would at start-up.

Nothing connects: no Kafka, Postgres or SMTP. What is checked is what the
process itself would refuse before connecting: every variable it reads
(types, ranges, required values, the Kafka security combination and its CA,
certificate and key files), its patient-data keys, and, for a worker, the
wiring of its stage. A wrong setting ends in the same ``ConfigError`` (exit
2, the variable named, never its value) as the process would end in.
"""

from __future__ import annotations

import os

from spakinect_pipeline.config import KafkaSettings, load_settings
from streams.stages import STAGE_NAMES

PROCESSES = ("ingress", *STAGE_NAMES, "console")


def check_config(process: str) -> list[str]:
    """Validate ``process``'s settings; return lines describing what it will use (no secrets)."""
    kafka = load_settings(KafkaSettings)
    if process == "ingress":
        from ingress.app import create_app
        from ingress.settings import IngressSettings

        create_app(load_settings(IngressSettings), kafka)  # builds, does not start
    elif process == "console":
        _console(kafka)
    elif process in STAGE_NAMES:
        from streams.worker import build_stage

        build_stage(process)
    else:
        raise ValueError(f"unknown process {process!r}; one of {', '.join(PROCESSES)}")
    return [f"{process}: settings valid (nothing was contacted)", describe_kafka(kafka)]


def _console(kafka: KafkaSettings) -> None:
    from console.app import create_app
    from console.settings import ConsoleSettings
    from sinks.email.settings import EmailSettings
    from sinks.postgres.settings import PostgresSettings
    from spakinect_pipeline.phi.settings import PhiSettings
    from streams.settings import StreamsSettings

    phi = load_settings(PhiSettings)
    if phi.kafka_master_keys is not None:
        phi.kafka_master()  # optional for the console; when set, it must parse
    create_app(
        load_settings(ConsoleSettings),
        kafka,
        load_settings(PostgresSettings).dsn,
        phi.keyring(),
        load_settings(EmailSettings),
        load_settings(StreamsSettings).app_id,
        os.environ.get("INGRESS_URL"),
    )


def describe_kafka(kafka: KafkaSettings) -> str:
    """How the process will talk to Kafka, naming no secret."""
    parts = [f"kafka: {kafka.security_protocol} to {len(kafka.bootstrap_servers)} server(s)"]
    if kafka.uses_sasl:
        parts.append(f"SASL {kafka.sasl_mechanism}")
    if kafka.uses_tls:
        parts.append("CA from KAFKA_SSL_CAFILE" if kafka.ssl_cafile else "system CAs")
        if kafka.ssl_certfile:
            parts.append("client certificate from KAFKA_SSL_CERTFILE")
    return ", ".join(parts)
