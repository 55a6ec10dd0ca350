"""A PostgreSQL cluster of our own (Debian's ``initdb``/``pg_ctl``) on a free port, in a throwaway
directory: for what may not be done to the machine's shared server, a restart above all. The chaos
rounds restart it as a crash would (``pg_ctl stop -m immediate``: no checkpoint, recovery from the
WAL at the next start) while a leader holds the lease.

It runs as the ``postgres`` user when we are root (PostgreSQL refuses to run as root), trust
authentication on 127.0.0.1 only, ``fsync=off`` (the machine does not crash under it; only the
server does). Starting it takes about a second.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path

from harness.postgres import PostgresServer, with_database
from harness.services import free_port


def _bindir() -> Path:
    """PG_BINDIR, else the newest of Debian's /usr/lib/postgresql/<version>/bin (not on PATH there)."""
    if "PG_BINDIR" in os.environ:
        return Path(os.environ["PG_BINDIR"])
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=lambda p: int(p.parent.name)
                      if p.parent.name.isdigit() else 0)
    return versions[-1] if versions else Path("/usr/lib/postgresql/15/bin")


BIN = _bindir()


def _binary(name: str) -> str:
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if found is None:
            raise RuntimeError(f"{name} is not installed (looked in {BIN} and PATH; set PG_BINDIR): "
                               "apt-get install postgresql")
        return found
    return str(path)


class PrivatePostgres:
    """``initdb`` in a temporary directory, ``pg_ctl start`` on a free port; ``restart`` stops it
    immediately and starts it again on the same port and data."""

    def __init__(self, port: int | None = None, max_connections: int = 200) -> None:
        self.port = port or free_port()
        self.max_connections = max_connections
        self.directory = Path(tempfile.mkdtemp(prefix="pg-private-"))
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self._account = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
        if self._account is not None:
            os.chown(self.directory, self._account.pw_uid, self._account.pw_gid)

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def url_for(self, database: str, port: int | None = None) -> str:
        """The URL of ``database``, optionally through a proxy listening on ``port``."""
        url = with_database(self.url, database)
        return url if port is None else url.replace(f":{self.port}/", f":{port}/")

    @property
    def server(self) -> PostgresServer:
        return PostgresServer(self.url)

    def _run(self, *command: str, timeout: float = 60) -> None:
        def become_postgres() -> None:
            assert self._account is not None
            os.setgid(self._account.pw_gid)
            os.setuid(self._account.pw_uid)
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                              preexec_fn=become_postgres if self._account is not None else None)
        if done.returncode != 0:
            raise RuntimeError(f"{Path(command[0]).name} failed ({done.returncode}): "
                               f"{(done.stderr or done.stdout).strip()[-500:]}; see {self.log}")

    def start(self) -> PrivatePostgres:
        if not self.data.exists():
            self._run(_binary("initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "--no-sync",
                      "-E", "UTF8")
        options = (f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off "
                   f"-c max_connections={self.max_connections}")
        self._run(_binary("pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "-t", "30",
                  "start")
        return self

    def postmaster_pid(self) -> int | None:
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, mode: str = "immediate") -> None:
        if (self.data / "postmaster.pid").exists():
            self._run(_binary("pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "-t", "30", "stop")

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        try:
            self.stop("fast")
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
