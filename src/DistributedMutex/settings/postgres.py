"""ELECTION_BACKEND=postgres: its settings, checked without echoing a password, and the library
arguments they become.

    POSTGRES_URL             libpq URL of the database (direct, or through PgBouncer)
    POSTGRES_NOTIFY_URL      a direct URL for LISTEN when POSTGRES_URL goes through a pooler
    POSTGRES_POOLED          POSTGRES_URL goes through a transaction-pooling PgBouncer
    POSTGRES_TABLE           the lease table (created if missing)
    POSTGRES_ELECTION        the election's row in it
    POSTGRES_LEASE_DURATION  seconds on the server's clock (the loop's timing follows from it)
    POSTGRES_CALL_TIMEOUT    each statement's statement_timeout and each call's bound

A URL is shown with its password masked wherever it is named (arguments.mask_url).
"""

from __future__ import annotations

from dataclasses import dataclass

from DistributedMutex.backends.postgres.arguments import (
    check_call_timeout,
    check_election,
    check_lease_duration,
    check_table,
    check_url,
    postgres_timing,
    url_password,
)
from DistributedMutex.errors import ConfigurationError
from DistributedMutex.settings.getter import Getter
from DistributedMutex.timing import ElectionTiming

POSTGRES = "postgres"
# library argument -> the setting it comes from
POSTGRES_NAMES = {"url": "POSTGRES_URL", "notify_url": "POSTGRES_NOTIFY_URL", "pooled": "POSTGRES_POOLED",
                  "table": "POSTGRES_TABLE", "election": "POSTGRES_ELECTION",
                  "lease_duration": "POSTGRES_LEASE_DURATION", "call_timeout": "POSTGRES_CALL_TIMEOUT"}
# The settings only ELECTION_BACKEND=postgres reads (POSTGRES_URL also serves POSTGRES_STORE).
POSTGRES_SETTINGS = tuple(POSTGRES_NAMES.values())


@dataclass(frozen=True)
class PostgresSettings:
    url: str
    notify_url: str | None
    pooled: bool
    table: str
    election: str
    lease_duration: float
    call_timeout: float

    def timing(self) -> ElectionTiming:
        """What PostgresLeaseBackend.default_timing() says for this lease."""
        return postgres_timing(self.lease_duration)

    def secrets(self) -> list[str]:
        return url_password(self.url) + (url_password(self.notify_url) if self.notify_url else [])


def postgres_url(name: str, value: str) -> str:
    return check_url(name, value)


def read_postgres(get: Getter) -> PostgresSettings:
    lease: float = get("POSTGRES_LEASE_DURATION", lambda name, value: check_lease_duration(name, _number(name, value)))
    renew = postgres_timing(lease).renew_interval
    url = get("POSTGRES_URL", postgres_url)
    pooled = get("POSTGRES_POOLED", boolean)
    return PostgresSettings(
        url=url, notify_url=get("POSTGRES_NOTIFY_URL", postgres_url, default=None), pooled=pooled,
        table=get("POSTGRES_TABLE", lambda name, value: check_table(name, value.strip())),
        election=get("POSTGRES_ELECTION", lambda name, value: check_election(name, value.strip())),
        lease_duration=lease,
        call_timeout=get("POSTGRES_CALL_TIMEOUT",
                         lambda name, value: check_call_timeout(name, _number(name, value), renew)))


def boolean(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(name, f"must be true or false, got {value!r}")


def _number(name: str, value: str) -> float:
    try:
        return float(value.strip())
    except ValueError:
        raise ConfigurationError(name, f"must be a number of seconds, got {value.strip()!r}") from None

