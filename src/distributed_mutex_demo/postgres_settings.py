"""ELECTION_BACKEND=postgres and the PostgreSQL store: the demo's defaults and POSTGRES_STORE.

The election's settings (POSTGRES_URL, POSTGRES_TABLE, ...) are read by the library's
DistributedMutex.settings.postgres, which ``distributed-mutex run`` reads them with too: one
reading for both programs.

    POSTGRES_STORE           true: the readings go to PostgreSQL at POSTGRES_URL as well
"""

from __future__ import annotations

from DistributedMutex.settings.getter import Getter
from DistributedMutex.settings.postgres import (
    POSTGRES,
    POSTGRES_NAMES,
    POSTGRES_SETTINGS,
    PostgresSettings,
    boolean,
    postgres_url,
    read_postgres,
)

__all__ = ["POSTGRES", "POSTGRES_DEFAULTS", "POSTGRES_NAMES", "POSTGRES_SETTINGS", "PostgresSettings",
           "postgres_url", "read_postgres", "read_postgres_store"]

POSTGRES_DEFAULTS: dict[str, str | None] = {
    # This machine's server (trust auth); docker-compose.yml's is postgresql://postgres:...@postgres:5432/...
    "POSTGRES_URL": "postgresql://postgres@127.0.0.1:5432/postgres",
    "POSTGRES_NOTIFY_URL": None,
    "POSTGRES_POOLED": "false",
    "POSTGRES_TABLE": "distributed_mutex_leases",
    "POSTGRES_ELECTION": "weather-leader",
    "POSTGRES_LEASE_DURATION": "5",
    "POSTGRES_CALL_TIMEOUT": "1",
    "POSTGRES_STORE": "false",  # true: the readings in PostgreSQL (POSTGRES_URL's database)
}


def read_postgres_store(get: Getter) -> str | None:
    """POSTGRES_URL when POSTGRES_STORE is true, else None."""
    if not get("POSTGRES_STORE", boolean):
        return None
    url: str = get("POSTGRES_URL", postgres_url)
    return url
