"""PostgreSQL for ``make demo ELECTION_BACKEND=postgres``: not started here, but found.

POSTGRES_URL when set, otherwise this machine's server (postgresql://postgres@127.0.0.1:5432/postgres,
as Debian's package and docker-compose.yml's service run it). A server that does not answer stops
the demo at once with one line saying what to do. The demo's lease table is a new one per run
(the instances create it), dropped when the demo ends.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit, urlunsplit

from distributed_mutex_demo.errors import LaunchError
from distributed_mutex_demo.postgres_settings import POSTGRES_DEFAULTS
from DistributedMutex.backends.postgres.arguments import check_url, describe_url, mask_url
from DistributedMutex.errors import ConfigurationError


@dataclass
class PostgresService:
    url: str
    table: str = field(default_factory=lambda: f"demo_leases_{uuid.uuid4().hex[:12]}")

    @classmethod
    def find(cls) -> PostgresService:
        url = os.environ.get("POSTGRES_URL", "").strip() or POSTGRES_DEFAULTS["POSTGRES_URL"] or ""
        try:
            check_url("POSTGRES_URL", url)
        except ConfigurationError as exc:
            raise LaunchError(str(exc)) from None
        try:
            import psycopg
        except ModuleNotFoundError:
            raise LaunchError("ELECTION_BACKEND=postgres needs the module 'psycopg', which is not installed: "
                              "pip install 'distributed-mutex[postgres]'") from None
        try:
            psycopg.connect(url, connect_timeout=3, autocommit=True).close()
        except psycopg.Error as exc:
            reason = (str(exc).strip().splitlines() or ["no answer"])[0].split("failed: ")[-1][:200]
            raise LaunchError(f"no PostgreSQL answers at {mask_url(url)} ({reason}): start one (Debian: apt-get "
                              "install postgresql; or docker compose up postgres) or set POSTGRES_URL") from None
        return cls(url)

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or "127.0.0.1"

    @property
    def port(self) -> int:
        return urlsplit(self.url).port or 5432

    @property
    def description(self) -> str:
        return f"PostgreSQL {describe_url(self.url)}, lease table {self.table}"

    def url_via(self, port: int) -> str:
        """The URL with 127.0.0.1:``port`` (an instance's proxy) for host and port."""
        parts = urlsplit(self.url)
        userinfo = parts.netloc.rpartition("@")[0]
        return urlunsplit(parts._replace(netloc=f"{userinfo}@127.0.0.1:{port}" if userinfo else f"127.0.0.1:{port}"))

    def drop_table(self) -> None:
        import psycopg

        try:
            with psycopg.connect(self.url, connect_timeout=3, autocommit=True) as connection:
                connection.execute(f"DROP TABLE IF EXISTS {self.table}")
        except psycopg.Error:
            pass  # the server went away: nothing more to tidy
