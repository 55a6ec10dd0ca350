"""The PostgreSQL store for weather readings (POSTGRES_STORE=true): the MySQL store's tables and
fencing rule, in the database of POSTGRES_URL, with the fencing check at the source on top.

    leader_term  one row: the newest term that ever registered, and who registered it
    weather      one row per (city, observed_at), naming the leader, term and provider

Fencing: a new leader registers its term before its first write; every write runs in a transaction
that locks the leader_term row and is refused unless the stored term equals its own (the rule of
every store). With ELECTION_BACKEND=postgres on the same database the transaction also checks the
lease row itself (leased_transaction: FOR SHARE, our holder, our term, not ended by the server's
clock), last, in the round trip of its COMMIT: a leader paused past its lease is refused by the
database even when the term row still names its term, no new leader can be granted the lease while
a write under the old one commits, and the leader's renew is not held up by a slow write.

Works through PgBouncer in transaction pooling mode: no prepared statements, bounds set with
SET LOCAL inside each transaction, no session state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import psycopg
from psycopg import errors as pg_errors

from distributed_mutex_demo.config import OPENWEATHERMAP
from distributed_mutex_demo.errors import StoreAccessError, StoreError, StoreUnavailableError
from distributed_mutex_demo.stores.base import (
    OneConnection,
    StoredReading,
    check_may_register,
    check_may_write,
)
from distributed_mutex_demo.weather import Reading
from DistributedMutex.backends.postgres.arguments import describe_url, mask_url, url_password
from DistributedMutex.backends.postgres.fencing import leased_transaction
from DistributedMutex.errors import StaleTermError

T = TypeVar("T")

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS leader_term (
        id SMALLINT NOT NULL PRIMARY KEY CHECK (id = 1),
        term BIGINT NOT NULL,
        leader_id VARCHAR(64) NOT NULL,
        registered_at TIMESTAMPTZ NOT NULL
    )""",
    f"""CREATE TABLE IF NOT EXISTS weather (
        id BIGSERIAL PRIMARY KEY,
        city VARCHAR(100) NOT NULL,
        temperature DOUBLE PRECISION NOT NULL,
        humidity SMALLINT NOT NULL,
        description VARCHAR(255) NOT NULL,
        observed_at TIMESTAMPTZ NOT NULL,
        leader_id VARCHAR(64) NOT NULL,
        term BIGINT NOT NULL,
        stored_at TIMESTAMPTZ NOT NULL,
        provider VARCHAR(32) NOT NULL DEFAULT '{OPENWEATHERMAP}',
        UNIQUE (city, observed_at)
    )""",
    # The fencing row always exists, so that FOR UPDATE always has a row to lock.
    "INSERT INTO leader_term (id, term, leader_id, registered_at) VALUES (1, 0, '', clock_timestamp())"
    " ON CONFLICT (id) DO NOTHING",
)
_REFUSED = {"42501", "28000", "28P01", "3D000"}
_STATEMENT_MS = 5000


class PostgresStore(OneConnection[psycopg.Connection[Any]]):
    """The PostgreSQL store. Thread-safe: one connection, used by one caller at a time, reopened when it breaks.

    ``lease``: (table, election) of a PostgresLeaseBackend in the same database, whose row every
    write checks first (the fencing check at the source)."""

    def __init__(self, url: str, *, lease: tuple[str, str] | None = None, connect_timeout: float = 5.0) -> None:
        super().__init__()
        self._url = url
        self._lease = lease
        self._connect_timeout = connect_timeout
        self.description = f"PostgreSQL at {describe_url(url)}" + (
            f" (writes fenced by the lease row of {lease[1]!r} in {lease[0]})" if lease else "")

    # -- leader side -------------------------------------------------------------------------

    def register_term(self, term: int, leader_id: str) -> None:
        def register(cursor: Any) -> None:
            stored = self._locked_term(cursor)
            check_may_register(stored, term)
            cursor.execute("UPDATE leader_term SET term = GREATEST(term, %s), leader_id = %s,"
                           " registered_at = clock_timestamp() WHERE id = 1", (term, leader_id))
        self._transaction(register, term, leader_id)

    def write(self, readings: Iterable[Reading], term: int, leader_id: str,
              still_leader: Callable[[], bool] = lambda: True) -> int:
        rows = [(r.city, r.temperature, r.humidity, r.description, r.observed_at, leader_id, term, r.provider)
                for r in readings]

        def write(cursor: Any) -> int:
            stored = self._locked_term(cursor)
            check_may_write(stored, term, still_leader)
            inserted = 0
            for row in rows:
                # The same observation stored twice is one row; the server's clock stamps stored_at.
                cursor.execute(
                    "INSERT INTO weather (city, temperature, humidity, description, observed_at, leader_id, term,"
                    " provider, stored_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, clock_timestamp())"
                    " ON CONFLICT (city, observed_at) DO NOTHING", row)
                inserted += cursor.rowcount == 1
            return inserted
        return self._transaction(write, term, leader_id)

    # -- worker side -------------------------------------------------------------------------

    def latest(self) -> list[StoredReading]:
        def read(cursor: Any) -> list[StoredReading]:
            cursor.execute(
                "SELECT DISTINCT ON (city) city, temperature, humidity, description, observed_at, leader_id, term,"
                " provider FROM weather ORDER BY city, observed_at DESC")
            return [StoredReading(city, float(t), int(h), d, o, lid, int(term), p)
                    for city, t, h, d, o, lid, term, p in cursor.fetchall()]
        return self._transaction(read)

    def stored_term(self) -> int | None:
        def read(cursor: Any) -> int | None:
            cursor.execute("SELECT term FROM leader_term WHERE id = 1")
            row = cursor.fetchone()
            return int(row[0]) if row else None
        return self._transaction(read)

    def check_access(self) -> None:
        """Log in, create what is missing, and try the privileges the demo needs, touching no row."""
        def probe(cursor: Any) -> None:
            for table in ("leader_term", "weather"):
                cursor.execute(f"SELECT 1 FROM {table} WHERE false")
                cursor.execute(f"UPDATE {table} SET id = id WHERE false")
            cursor.execute("INSERT INTO weather SELECT * FROM weather WHERE false")
        self._transaction(probe)

    # -- plumbing ----------------------------------------------------------------------------

    @staticmethod
    def _locked_term(cursor: Any) -> int | None:
        cursor.execute("SELECT term FROM leader_term WHERE id = 1 FOR UPDATE")
        row = cursor.fetchone()
        return int(row[0]) if row else None

    def _transaction(self, body: Callable[[Any], T], term: int | None = None, leader_id: str | None = None) -> T:
        with self._lock:
            for attempt in (1, 2):
                try:
                    connection = self._connect()
                    if term is not None and leader_id is not None and self._lease is not None:
                        table, election = self._lease
                        with leased_transaction(connection, election, leader_id, term, table=table) as cursor:
                            self._bound(cursor)
                            return body(cursor)
                    with connection.transaction(), connection.cursor() as cursor:
                        self._bound(cursor)
                        return body(cursor)
                except (StoreError, StaleTermError):
                    raise
                except pg_errors.UndefinedTable:
                    self._schema_ready = False
                    self._drop_connection()
                    if attempt == 2:
                        raise self._unavailable("its tables vanished") from None
                except psycopg.Error as exc:
                    self._drop_connection()
                    if getattr(exc, "sqlstate", None) in _REFUSED or _refused_at_connect(exc):
                        raise StoreAccessError(f"PostgreSQL at {mask_url(self._url)} refused the store: "
                                               f"{self._clean(exc)} (check POSTGRES_URL)") from None
                    # A server restart shows up as a broken connection on the first call after it.
                    if attempt == 1 and isinstance(exc, psycopg.OperationalError) and self._schema_ready:
                        continue
                    raise self._unavailable(self._clean(exc)) from None
        raise AssertionError("unreachable")

    @staticmethod
    def _bound(cursor: Any) -> None:
        cursor.execute(f"SET LOCAL statement_timeout = {_STATEMENT_MS}")
        cursor.execute(f"SET LOCAL lock_timeout = {_STATEMENT_MS}")

    def _connect(self) -> psycopg.Connection[Any]:
        if self._connection is not None and not self._connection.closed:
            return self._connection
        connection = psycopg.connect(self._url, autocommit=True, prepare_threshold=None,
                                     connect_timeout=max(2, round(self._connect_timeout)),
                                     application_name="distributed-mutex-demo store")
        if not self._schema_ready:
            with connection.transaction(), connection.cursor() as cursor:
                for statement in SCHEMA:
                    try:
                        with connection.transaction():  # a savepoint: a lost race ends only itself
                            cursor.execute(statement)
                    except pg_errors.UniqueViolation:
                        pass  # another instance created it at the same moment
            self._schema_ready = True
        self._connection = connection
        return connection

    def _unavailable(self, reason: str) -> StoreUnavailableError:
        return StoreUnavailableError(f"PostgreSQL at {mask_url(self._url)} is unavailable ({reason})")

    def _clean(self, exc: BaseException) -> str:
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        for secret in url_password(self._url):
            text = text.replace(secret, "***")
        return text[:300]


def _refused_at_connect(exc: psycopg.Error) -> bool:
    text = str(exc)
    return "FATAL" in text and any(word in text for word in ("does not exist", "password", "pg_hba", "permission"))
