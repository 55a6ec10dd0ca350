"""SQLite store for weather readings: the MySQL store's tables and fencing rule, in one local file.

For instances on one machine (SQLite's locks are the file system's: not for a network share, and
not for containers that do not share the file). Used when MYSQL_HOST is not set.

Several processes share the file safely:

- WAL journal: readers (the workers) never wait for the writer, nor it for them.
- busy_timeout: a writer that finds another one writing waits for it (up to ``busy_timeout``
  seconds) instead of failing at once with "database is locked".
- BEGIN IMMEDIATE for every write: the write lock is taken before the fencing row is read, so
  "the stored term is ours" and the inserts are one atomic step across processes. (A deferred
  transaction would read first and could then find itself unable to upgrade to a writer.)

The fencing rule is the MySQL store's: a new leader registers its term before its first write, and
a term older than the stored one is refused; each write checks, inside its transaction, that the
stored term equals its own and that the caller still leads, and is rolled back otherwise.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import TypeVar

from distributed_mutex_demo.config import OPENWEATHERMAP
from distributed_mutex_demo.errors import StoreAccessError, StoreError, StoreUnavailableError
from distributed_mutex_demo.stores.base import OneConnection, StoredReading, check_may_register, check_may_write
from distributed_mutex_demo.weather import Reading

T = TypeVar("T")

# SQLite's own clock, in UTC, to the millisecond: the rows' stored_at (MySQL: UTC_TIMESTAMP(6)).
NOW = "strftime('%Y-%m-%d %H:%M:%f', 'now')"
OBSERVED_FORMAT = "%Y-%m-%d %H:%M:%S"  # UTC; sorts as text in time order

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS leader_term (
        id INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
        term INTEGER NOT NULL,
        leader_id TEXT NOT NULL,
        registered_at TEXT NOT NULL
    )""",
    # AUTOINCREMENT: ids never reused, so id order is insertion order, as in MySQL.
    f"""CREATE TABLE IF NOT EXISTS weather (
        id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
        city TEXT NOT NULL,
        temperature REAL NOT NULL,
        humidity INTEGER NOT NULL,
        description TEXT NOT NULL,
        observed_at TEXT NOT NULL,
        leader_id TEXT NOT NULL,
        term INTEGER NOT NULL,
        stored_at TEXT NOT NULL,
        provider TEXT NOT NULL DEFAULT '{OPENWEATHERMAP}',
        UNIQUE (city, observed_at)
    )""",
    # The fencing row always exists, so that two first registrations serialise on it like later ones.
    f"INSERT OR IGNORE INTO leader_term (id, term, leader_id, registered_at) VALUES (1, 0, '', {NOW})",
)

# Primary result codes (https://www.sqlite.org/rescode.html); errors carry extended ones.
_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 3, 5, 6, 8
_SQLITE_CORRUPT, _SQLITE_CANTOPEN, _SQLITE_AUTH, _SQLITE_NOTADB = 11, 14, 23, 26
# Python 3.10's exceptions carry no code: SQLite's fixed messages for the same ones.
_MESSAGE_CODES = {"database is locked": _SQLITE_BUSY, "file is not a database": _SQLITE_NOTADB,
                  "unable to open database file": _SQLITE_CANTOPEN,
                  "attempt to write a readonly database": _SQLITE_READONLY}


class SQLiteStore(OneConnection[sqlite3.Connection]):
    """Thread-safe: one connection, used by one caller at a time (the leader's and worker's calls
    run in threads), reopened after an error."""

    def __init__(self, path: str, *, busy_timeout: float = 5.0) -> None:
        super().__init__()
        self.path = os.path.abspath(os.path.expanduser(path))
        self.description = f"SQLite at {self.path}"
        self._busy_timeout = busy_timeout

    # -- leader side -------------------------------------------------------------------------

    def register_term(self, term: int, leader_id: str) -> None:
        """Record ``term`` as the newest leadership; refused if a newer one is recorded."""
        def register(connection: sqlite3.Connection) -> None:
            stored = _stored_term(connection)
            check_may_register(stored, term)
            connection.execute(
                f"UPDATE leader_term SET term = MAX(term, ?), leader_id = ?, registered_at = {NOW} WHERE id = 1",
                (term, leader_id))
        self._transaction(register, write=True)

    def write(self, readings: Iterable[Reading], term: int, leader_id: str,
              still_leader: Callable[[], bool] = lambda: True) -> int:
        """Store readings under the fencing check; returns how many were new.

        ``still_leader`` is asked once the write lock is held: a write abandoned by a leader that
        has stepped down meanwhile is rolled back instead of committed."""
        rows = [(r.city, r.temperature, r.humidity, r.description, _utc_text(r.observed_at),
                 leader_id, term, r.provider) for r in readings]

        def write(connection: sqlite3.Connection) -> int:
            stored = _stored_term(connection)
            check_may_write(stored, term, still_leader)
            inserted = 0
            for row in rows:
                # DO NOTHING on the unique (city, observed_at) only: other errors still raise.
                cursor = connection.execute(
                    "INSERT INTO weather (city, temperature, humidity, description, observed_at,"
                    f" leader_id, term, provider, stored_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, {NOW})"
                    " ON CONFLICT (city, observed_at) DO NOTHING", row)
                inserted += cursor.rowcount == 1
            return inserted
        return self._transaction(write, write=True)

    # -- worker side -------------------------------------------------------------------------

    def latest(self) -> list[StoredReading]:
        """The newest reading of each city."""
        def read(connection: sqlite3.Connection) -> list[StoredReading]:
            rows = connection.execute(
                "SELECT w.city, w.temperature, w.humidity, w.description, w.observed_at,"
                " w.leader_id, w.term, w.provider FROM weather w"
                " JOIN (SELECT city, MAX(observed_at) AS newest FROM weather GROUP BY city) n"
                " ON w.city = n.city AND w.observed_at = n.newest ORDER BY w.city").fetchall()
            return [StoredReading(city, float(t), int(h), d, _parse_utc(o), lid, int(term), p)
                    for city, t, h, d, o, lid, term, p in rows]
        return self._transaction(read, write=False)

    def stored_term(self) -> int | None:
        def read(connection: sqlite3.Connection) -> int | None:
            return _stored_term(connection)
        return self._transaction(read, write=False)

    def check_access(self) -> None:
        """Open (or create) the file and its tables, and take the write lock once, writing nothing.

        Raises StoreAccessError (no such directory, not a database, not writable) or
        StoreUnavailableError (locked by another process for longer than the busy timeout)."""
        self._transaction(lambda connection: None, write=True)

    # -- plumbing ----------------------------------------------------------------------------

    def _transaction(self, body: Callable[[sqlite3.Connection], T], *, write: bool) -> T:
        with self._lock:
            try:
                connection = self._connect()
                # IMMEDIATE takes the write lock now (waiting up to busy_timeout for another
                # writer); a read gets one consistent snapshot for its statements.
                connection.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    result = body(connection)
                    connection.execute("COMMIT")
                    return result
                except BaseException:
                    _rollback_quietly(connection)
                    raise
            except sqlite3.Error as exc:
                error = self._translate(exc)
                if not _is_busy(exc):  # a busy connection is fine; anything else: start afresh
                    self._drop_connection()
                    self._schema_ready = False  # e.g. the file was replaced: check the tables again
                raise error from None

    def _connect(self) -> sqlite3.Connection:
        if self._connection is not None:
            return self._connection
        where = self._where
        # sqlite's own "unable to open database file" does not say which of these it is.
        if os.path.isdir(self.path):
            raise StoreAccessError(f"{where}: is a directory: SQLITE_PATH must name a file")
        directory = os.path.dirname(self.path)
        if not os.path.isdir(directory):
            raise StoreAccessError(f"{where}: its directory {directory} does not exist: "
                                   "create it or change SQLITE_PATH")
        # isolation_level=None: no implicit transactions; each method says BEGIN itself.
        connection = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None,
                                     check_same_thread=False)
        try:
            connection.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout * 1000)}")
            # FULL: a committed term registration survives a power cut too (the fencing relies on
            # it); one fsync per write round costs nothing at this rate.
            connection.execute("PRAGMA synchronous = FULL")
            if not self._schema_ready:
                self._create_what_is_missing(connection)
        except BaseException:
            connection.close()
            raise
        self._connection = connection
        return connection

    def _create_what_is_missing(self, connection: sqlite3.Connection) -> None:
        # WAL is a property of the file: the first instance sets it, later ones find it set.
        if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            connection.execute("PRAGMA journal_mode = WAL").fetchone()
        tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if not {"leader_term", "weather"} <= tables:
            # Only then the write lock (two first starts create the tables one after the other):
            # a reader opening the file while a leader writes must not wait for it.
            connection.execute("BEGIN IMMEDIATE")
            try:
                for statement in SCHEMA:
                    connection.execute(statement)
                connection.execute("COMMIT")
            except BaseException:
                _rollback_quietly(connection)
                raise
        self._schema_ready = True

    @property
    def _where(self) -> str:
        return f"SQLite database {self.path}"

    def _translate(self, exc: sqlite3.Error) -> StoreError:
        where = self._where
        text = str(exc)
        primary = _primary_code(exc)
        if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return StoreUnavailableError(
                f"{where} is busy: another process held its write lock for over {self._busy_timeout:g} s")
        if primary in (_SQLITE_NOTADB, _SQLITE_CORRUPT):
            return StoreAccessError(f"{where}: is not an SQLite database ({text}): check SQLITE_PATH")
        if primary == _SQLITE_CANTOPEN:
            return StoreAccessError(f"{where}: cannot be opened ({text}): check SQLITE_PATH and the "
                                    "permissions of the file and its directory")
        if primary in (_SQLITE_READONLY, _SQLITE_PERM, _SQLITE_AUTH):
            return StoreAccessError(f"{where}: cannot be written ({text}): check the permissions of the "
                                    "file and its directory (SQLite also writes -wal and -shm files there)")
        return StoreUnavailableError(f"{where} failed ({getattr(exc, 'sqlite_errorname', type(exc).__name__)}: {text})")


def _primary_code(exc: sqlite3.Error) -> int | None:
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    return code & 0xFF if isinstance(code, int) else _MESSAGE_CODES.get(str(exc))


def _is_busy(exc: sqlite3.Error) -> bool:
    return _primary_code(exc) in (_SQLITE_BUSY, _SQLITE_LOCKED)


def _stored_term(connection: sqlite3.Connection) -> int | None:
    row = connection.execute("SELECT term FROM leader_term WHERE id = 1").fetchone()
    return int(row[0]) if row else None


def _rollback_quietly(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        try:
            connection.execute("ROLLBACK")
        except sqlite3.Error:
            pass  # SQLite rolls back by itself when it cannot go on; the error that got us here counts


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime(OBSERVED_FORMAT)


def _parse_utc(text: str) -> datetime:
    return datetime.strptime(text, OBSERVED_FORMAT).replace(tzinfo=timezone.utc)
