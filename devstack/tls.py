"""A local certificate authority for the secured stack: made at start, never committed.

trustme issues the CA and the servers' certificates (for ``127.0.0.1`` and
``localhost``) into a folder under ``.data/`` (or a test's temporary folder).
Every server issued in one folder (Kafka, Postgres) shares that folder's CA,
so one ``ca.pem`` trusts the whole stack; the CA's key stays beside it (0600)
so a restart issues from the same CA.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography.hazmat.primitives import serialization


@dataclass(frozen=True)
class LocalPki:
    """Paths of the CA bundle and of one server's key and certificate chain (PEM)."""

    ca_file: Path
    server_key: Path
    server_chain: Path
    server_pem: Path  # key and chain in one file (Kafka's PEM keystore)


def folder_ca(folder: Path) -> trustme.CA:
    """The CA of ``folder``: the one written there before, or a new one (written now)."""
    cert, key = folder / "ca.pem", folder / "ca.key"
    if cert.exists() and key.exists():
        return trustme.CA.from_pem(cert.read_bytes(), key.read_bytes())
    ca = trustme.CA(organization_name="spakinect-pipeline local CA")
    ca.private_key_pem.write_to_path(str(key))
    key.chmod(0o600)
    ca.cert_pem.write_to_path(str(cert))
    return ca


def local_pki(folder: Path, name: str = "server") -> LocalPki:
    """A server certificate for 127.0.0.1/localhost from ``folder``'s CA, written there."""
    folder.mkdir(parents=True, exist_ok=True)
    ca = folder_ca(folder)
    server = ca.issue_cert("127.0.0.1", "localhost")
    pki = LocalPki(
        ca_file=folder / "ca.pem",
        server_key=folder / f"{name}.key",
        server_chain=folder / f"{name}.crt",
        server_pem=folder / f"{name}.pem",
    )
    # PKCS#8: the form Kafka's PEM keystore reads (trustme writes EC keys as SEC1).
    key = serialization.load_pem_private_key(server.private_key_pem.bytes(), password=None)
    pkcs8 = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    chain = b"".join(blob.bytes() for blob in server.cert_chain_pems)
    for path in (pki.server_key, pki.server_pem):
        path.unlink(missing_ok=True)  # a key another user owns (Postgres's) is replaced, not opened
        path.touch(0o600)
    pki.server_key.write_bytes(pkcs8)
    pki.server_chain.write_bytes(chain)
    pki.server_pem.write_bytes(pkcs8 + chain)
    return pki
