"""PostgreSQL for the tests: the server given by POSTGRES_URL (default: the local one on
127.0.0.1:5432, trust auth, database test), a database of its own per test where one is needed,
and Debian's PgBouncer started on a free port in front of it, in transaction pooling mode."""

from __future__ import annotations

import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from harness.services import free_port

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/test"
PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"


def with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


class PostgresServer:
    """The server the tests use; nothing is started here (`.ci/run` starts Debian's when none answers)."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url or os.environ.get("POSTGRES_URL", DEFAULT_URL)
        parts = urlsplit(self.url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 5432
        self.user = parts.username or "postgres"

    def connect(self, database: str | None = None) -> Any:
        import psycopg

        return psycopg.connect(with_database(self.url, database) if database else self.url, autocommit=True,
                               connect_timeout=5)

    def check(self) -> None:
        import psycopg

        try:
            self.connect().close()
        except psycopg.Error as exc:
            raise RuntimeError(f"no PostgreSQL answers at {self.host}:{self.port} as {self.user!r} "
                               f"({str(exc).splitlines()[0]}); start one or set POSTGRES_URL (`.ci/run` starts "
                               "Debian's postgresql)") from None

    def execute(self, sql: str, params: tuple[Any, ...] = (), database: str | None = None) -> list[tuple[Any, ...]]:
        with self.connect(database) as connection:
            cursor = connection.execute(sql, params)
            return list(cursor.fetchall()) if cursor.description else []

    def create_database(self) -> str:
        name = f"dm_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self.execute(f"CREATE DATABASE {name}")
        return name

    def drop_database(self, name: str) -> None:
        self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def drop_table(self, table: str, database: str | None = None) -> None:
        self.execute(f"DROP TABLE IF EXISTS {table}", database=database)


class PgBouncer:
    """Debian's pgbouncer on a free port in front of ``server``, transaction pooling, trust auth.

    PgBouncer refuses to run as root: as root, it runs as the ``postgres`` user, with its files in a
    directory that user owns. Every database name is passed through (``* =``)."""

    def __init__(self, server: PostgresServer, *, pool_size: int = 4) -> None:
        if not Path(PGBOUNCER).exists():
            raise RuntimeError("PgBouncer is not installed: apt-get install pgbouncer (`.ci/run` does it)")
        self.server = server
        self.port = free_port()
        self.pool_size = pool_size
        self.directory = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
        self.log = self.directory / "pgbouncer.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        parts = urlsplit(self.server.url)
        userinfo = parts.netloc.rpartition("@")[0]
        netloc = f"{userinfo}@127.0.0.1:{self.port}" if userinfo else f"127.0.0.1:{self.port}"
        return urlunsplit(parts._replace(netloc=netloc))

    def url_for(self, database: str) -> str:
        return with_database(self.url, database)

    def start(self, timeout: float = 15.0) -> PgBouncer:
        users = self.directory / "users.txt"
        users.write_text(f'"{self.server.user}" ""\n"postgres" ""\n"root" ""\n')
        config = self.directory / "pgbouncer.ini"
        config.write_text("\n".join([
            "[databases]",
            f"* = host={self.server.host} port={self.server.port}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {self.port}",
            "auth_type = trust",
            f"auth_file = {users}",
            "pool_mode = transaction",
            f"default_pool_size = {self.pool_size}",
            "max_client_conn = 200",
            "unix_socket_dir =",
            f"logfile = {self.log}",
            "server_check_delay = 0",
            "",
        ]))
        command = [PGBOUNCER, str(config)]
        preexec = None
        if os.geteuid() == 0:
            account = pwd.getpwnam("postgres")
            for path in (self.directory, users, config):
                os.chown(path, account.pw_uid, account.pw_gid)

            def preexec() -> None:  # "PgBouncer should not run as root"
                os.setgid(account.pw_gid)
                os.setuid(account.pw_uid)
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        preexec_fn=preexec, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pgbouncer exited at start (code {self.process.returncode}); see {self.log}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"pgbouncer did not listen on port {self.port} within {timeout:g} s; see {self.log}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)
