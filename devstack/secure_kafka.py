"""The broker of the secured stack: clients reach it only over SASL_SSL with SCRAM.

Like a managed cluster: one ``SASL_SSL`` listener (TLS from the local CA,
SCRAM-SHA-512 users made at format time), the controller on its own
loopback listener, the broker talking to itself over SASL_SSL as user
``broker``. No authorizer: any authenticated user may do anything.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from devstack.kafka import KafkaBroker
from devstack.process import stored_secret
from devstack.tls import LocalPki, local_pki
from spakinect_pipeline.config import KafkaSettings

MECHANISM = "SCRAM-SHA-512"
APP_USER = "spakinect-pipeline"


class SecuredKafkaBroker(KafkaBroker):
    """A :class:`KafkaBroker` whose only client listener is SASL_SSL/SCRAM."""

    def __init__(self, *args: Any, pki_dir: Path, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pki: LocalPki = local_pki(pki_dir, "kafka")
        # Kept beside the data: the SCRAM users are made once, when the storage is formatted.
        self.app_password = stored_secret(self.data_dir / "app.secret")
        self._broker_password = stored_secret(self.data_dir / "broker.secret")

    def client_settings(self, **overrides: Any) -> KafkaSettings:
        """What the pipeline's processes need to connect (the app user, the local CA)."""
        options: dict[str, Any] = {
            "bootstrap_servers": [self.bootstrap_servers],
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": MECHANISM,
            "sasl_username": APP_USER,
            "sasl_password": self.app_password,
            "ssl_cafile": str(self.pki.ca_file),
        }
        return KafkaSettings(**(options | overrides))

    def client_env(self) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.bootstrap_servers,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": MECHANISM,
            "KAFKA_SASL_USERNAME": APP_USER,
            "KAFKA_SASL_PASSWORD": self.app_password,
            "KAFKA_SSL_CAFILE": str(self.pki.ca_file),
        }

    def _properties(self) -> Path:
        path = super()._properties()
        props = dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)
        listener = f"SASL_SSL://127.0.0.1:{self.port}"
        jaas = (
            "org.apache.kafka.common.security.scram.ScramLoginModule required "
            f'username="broker" password="{self._broker_password}";'
        )
        props |= {
            "listeners": f"{listener},CONTROLLER://127.0.0.1:{self.controller_port}",
            "advertised.listeners": listener,
            "inter.broker.listener.name": "SASL_SSL",
            "listener.security.protocol.map": "SASL_SSL:SASL_SSL,CONTROLLER:PLAINTEXT",
            "sasl.enabled.mechanisms": MECHANISM,
            "sasl.mechanism.inter.broker.protocol": MECHANISM,
            f"listener.name.sasl_ssl.{MECHANISM.lower()}.sasl.jaas.config": jaas,
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(self.pki.server_pem),
            "ssl.truststore.type": "PEM",
            "ssl.truststore.location": str(self.pki.ca_file),
        }
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        path.chmod(0o600)  # it holds the broker's own password
        return path

    def _format_args(self) -> tuple[str, ...]:
        return (
            "--add-scram",
            f"{MECHANISM}=[name=broker,password={self._broker_password}]",
            "--add-scram",
            f"{MECHANISM}=[name={APP_USER},password={self.app_password}]",
        )

    def _metadata_ok(self) -> bool:
        import asyncio

        from aiokafka.admin import AIOKafkaAdminClient

        async def probe() -> bool:
            admin = AIOKafkaAdminClient(
                **self.client_settings().client_options(), request_timeout_ms=3000
            )
            await admin.start()
            try:
                await admin.list_topics()
                return True
            finally:
                await admin.close()

        return asyncio.run(probe())
