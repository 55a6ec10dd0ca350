"""The MySQL store for weather readings.

The readings go to MySQL when MYSQL_HOST is set, otherwise to a local SQLite file (sqlite.py).
Both have the same tables and the same fencing rule, with the leadership term as the fencing token.

Two tables, created if missing (the database too, if the user may create it):

    leader_term  one row: the newest term that ever registered, and who registered it
    weather      one row per (city, observed_at): the same observation stored twice is one row;
                 each row names the leader and term that stored it and the provider that measured it

A weather table made by an earlier version lacks the provider column: it is added at start (that
once needs ALTER), its old rows saying openweathermap, the only provider there was.

Fencing: a new leader registers its term before its first write; every write runs in a transaction
that locks the leader_term row and is refused unless the stored term equals its own. A leader
paused past its lease that wakes up finds a newer term there and cannot overwrite its successor.

Privileges: SELECT, INSERT and UPDATE on the database; CREATE as well only while the tables (or the
database) do not exist yet. What exists is looked up first, so a user without CREATE works on a
schema an administrator made.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any, TypeVar

import mysql.connector
from mysql.connector import errorcode
from mysql.connector.abstracts import MySQLConnectionAbstract
from mysql.connector.pooling import PooledMySQLConnection

from distributed_mutex_demo.config import OPENWEATHERMAP, check_database_name
from distributed_mutex_demo.errors import StoreAccessError, StoreError, StoreUnavailableError
from distributed_mutex_demo.store_settings import MySQLSettings
from distributed_mutex_demo.stores.base import (
    OneConnection,
    StoredReading,
    check_may_register,
    check_may_write,
    close_quietly,
)
from distributed_mutex_demo.weather import Reading
from DistributedMutex.errors import StaleTermError

T = TypeVar("T")
# What mysql.connector.connect returns.
Connection = PooledMySQLConnection | MySQLConnectionAbstract
# The cursors below stay Any: the driver types every value of a row as the union of all SQL types,
# while what a column holds is known from SCHEMA.

SCHEMA = (  # in the order of TABLES
    """CREATE TABLE IF NOT EXISTS leader_term (
        id TINYINT UNSIGNED NOT NULL PRIMARY KEY,
        term BIGINT UNSIGNED NOT NULL,
        leader_id VARCHAR(64) NOT NULL,
        registered_at DATETIME(6) NOT NULL
    ) ENGINE=InnoDB""",
    """CREATE TABLE IF NOT EXISTS weather (
        id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
        city VARCHAR(100) NOT NULL,
        temperature DOUBLE NOT NULL,
        humidity TINYINT UNSIGNED NOT NULL,
        description VARCHAR(255) NOT NULL,
        observed_at DATETIME NOT NULL,
        leader_id VARCHAR(64) NOT NULL,
        term BIGINT UNSIGNED NOT NULL,
        stored_at DATETIME(6) NOT NULL,
        provider VARCHAR(32) NOT NULL DEFAULT 'openweathermap',
        UNIQUE KEY one_observation (city, observed_at),
        KEY newest (city, observed_at)
    ) ENGINE=InnoDB""",
)

TABLES = ("leader_term", "weather")
# For a weather table made before rows named their provider. The default is what those rows (and
# any older instance still running during an upgrade, which inserts without it) really used.
PROVIDER_COLUMN = f"provider VARCHAR(32) NOT NULL DEFAULT '{OPENWEATHERMAP}'"
# What the demo does with each table, as statements that touch no row: run at start, they find a
# missing privilege before the first real write does (the server checks privileges first).
_PRIVILEGE_PROBES = (
    ("SELECT", "SELECT 1 FROM {table} WHERE 1 = 0"),
    ("INSERT", "INSERT INTO {table} SELECT * FROM {table} WHERE 1 = 0"),
    ("UPDATE", "UPDATE {table} SET id = id WHERE 1 = 0"),
)
NEEDED_PRIVILEGES = "SELECT, INSERT, UPDATE (and CREATE until its tables exist)"
_ACCESS_DENIED = {errorcode.ER_DBACCESS_DENIED_ERROR, errorcode.ER_TABLEACCESS_DENIED_ERROR,
                  errorcode.ER_SPECIFIC_ACCESS_DENIED_ERROR, errorcode.ER_COLUMNACCESS_DENIED_ERROR}

# Errors that mean "the connection is gone": reconnect once and try again.
_CONNECTION_LOST = {
    errorcode.CR_SERVER_GONE_ERROR, errorcode.CR_SERVER_LOST, errorcode.CR_CONNECTION_ERROR,
    errorcode.CR_CONN_HOST_ERROR, errorcode.CR_SERVER_LOST_EXTENDED, 2055,
    errorcode.ER_CON_COUNT_ERROR,
}


class WeatherStore(OneConnection[Connection]):
    """The MySQL store. Thread-safe: one connection, used by one caller at a time, reopened when it breaks."""

    def __init__(self, settings: MySQLSettings, *, connect_timeout: float = 5.0) -> None:
        check_database_name(settings.database)  # it is quoted into SQL as an identifier
        super().__init__()
        self._settings = settings
        self._connect_timeout = connect_timeout
        self.description = f"MySQL at {settings.host}:{settings.port}, database {settings.database}"

    # -- leader side -------------------------------------------------------------------------

    def register_term(self, term: int, leader_id: str) -> None:
        """Record ``term`` as the newest leadership; refused if a newer one is recorded."""
        def register(cursor: Any) -> None:
            stored = self._locked_term(cursor)
            check_may_register(stored, term)
            cursor.execute(
                "INSERT INTO leader_term (id, term, leader_id, registered_at) VALUES (1, %s, %s, UTC_TIMESTAMP(6))"
                " ON DUPLICATE KEY UPDATE term = GREATEST(term, VALUES(term)),"
                " leader_id = VALUES(leader_id), registered_at = VALUES(registered_at)",
                (term, leader_id),
            )
        self._transaction(register)

    def write(self, readings: Iterable[Reading], term: int, leader_id: str,
              still_leader: Callable[[], bool] = lambda: True) -> int:
        """Store readings under the fencing check; returns how many were new.

        ``still_leader`` is asked once the fencing row is locked: a write abandoned by a leader
        that has stepped down meanwhile is rolled back instead of committed."""
        rows = [(r.city, r.temperature, r.humidity, r.description, _naive_utc(r.observed_at),
                 leader_id, term, r.provider) for r in readings]

        def write(cursor: Any) -> int:
            stored = self._locked_term(cursor)
            check_may_write(stored, term, still_leader)
            inserted = 0
            for row in rows:
                # ON DUPLICATE KEY (not INSERT IGNORE, which would also hide real errors). The
                # server's clock stamps stored_at: one clock for all instances, whatever theirs say.
                cursor.execute(
                    "INSERT INTO weather (city, temperature, humidity, description, observed_at,"
                    " leader_id, term, provider, stored_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, UTC_TIMESTAMP(6))"
                    " ON DUPLICATE KEY UPDATE id = id",
                    row,
                )
                inserted += cursor.rowcount == 1
            return inserted
        return self._transaction(write)

    # -- worker side -------------------------------------------------------------------------

    def latest(self) -> list[StoredReading]:
        """The newest reading of each city."""
        def read(cursor: Any) -> list[StoredReading]:
            cursor.execute(
                "SELECT w.city, w.temperature, w.humidity, w.description, w.observed_at,"
                " w.leader_id, w.term, w.provider FROM weather w"
                " JOIN (SELECT city, MAX(observed_at) AS newest FROM weather GROUP BY city) n"
                " ON w.city = n.city AND w.observed_at = n.newest ORDER BY w.city"
            )
            return [StoredReading(city, float(t), int(h), d, o.replace(tzinfo=timezone.utc), lid, int(term), p)
                    for city, t, h, d, o, lid, term, p in cursor.fetchall()]
        return self._transaction(read)

    def stored_term(self) -> int | None:
        def read(cursor: Any) -> int | None:
            cursor.execute("SELECT term FROM leader_term WHERE id = 1")
            row = cursor.fetchone()
            return int(row[0]) if row else None
        return self._transaction(read)

    def check_access(self) -> None:
        """Log in, create what is missing, and try each privilege the demo needs, touching no row.

        Raises StoreAccessError (login or privilege refused) or StoreUnavailableError."""
        def probe(cursor: Any) -> None:
            for table in TABLES:
                for privilege, statement in _PRIVILEGE_PROBES:
                    try:
                        cursor.execute(statement.format(table=table))
                        if cursor.with_rows:
                            cursor.fetchall()
                    except mysql.connector.Error as exc:
                        if getattr(exc, "errno", None) in _ACCESS_DENIED:
                            raise self._lacks(privilege) from None
                        raise
            cursor.execute("ROLLBACK")  # nothing was written; be sure of it
        self._transaction(probe)

    # -- plumbing ----------------------------------------------------------------------------

    @staticmethod
    def _locked_term(cursor: Any) -> int | None:
        cursor.execute("SELECT term FROM leader_term WHERE id = 1 FOR UPDATE")
        row = cursor.fetchone()
        return int(row[0]) if row else None

    def _transaction(self, body: Callable[[Any], T]) -> T:
        with self._lock:
            for attempt in (1, 2):
                try:
                    connection = self._connect()
                    cursor = connection.cursor()
                    try:
                        result = body(cursor)
                        connection.commit()
                        return result
                    except (StoreError, StaleTermError):
                        connection.rollback()
                        raise
                    finally:
                        close_quietly(cursor)
                except mysql.connector.Error as exc:
                    self._drop_connection()
                    if getattr(exc, "errno", None) in (errorcode.ER_BAD_DB_ERROR, errorcode.ER_NO_SUCH_TABLE):
                        self._schema_ready = False  # the server lost its data: create it again
                    # A server restart shows up as a broken connection on the first call after it:
                    # reconnect once. A committed write retried is harmless (unique key, same term).
                    if attempt == 1 and _connection_lost(exc) and self._schema_ready:
                        continue
                    raise self._translate(exc) from None
        raise AssertionError("unreachable")

    def _connect(self) -> Connection:
        if self._connection is not None:
            return self._connection
        s = self._settings
        timeout = max(1, round(self._connect_timeout))
        common = dict(host=s.host, port=s.port, user=s.user, password=s.password,
                      connection_timeout=self._connect_timeout, read_timeout=timeout,
                      write_timeout=timeout, autocommit=False)
        if not self._schema_ready:
            bootstrap = mysql.connector.connect(**common)
            try:
                cursor = bootstrap.cursor()
                self._create_what_is_missing(cursor)
                # The fencing row always exists, so FOR UPDATE always has a row to lock: two
                # first registrations cannot both see "no term yet".
                cursor.execute("INSERT IGNORE INTO leader_term (id, term, leader_id, registered_at)"
                               " VALUES (1, 0, '', UTC_TIMESTAMP(6))")
                bootstrap.commit()
            finally:
                bootstrap.close()
            self._schema_ready = True
        self._connection = mysql.connector.connect(database=s.database, **common)
        with self._connection.cursor() as cursor:
            cursor.execute("SET time_zone = '+00:00'")
            cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")
            # Waiting long on the fencing row lock only delays a leader that may be stale anyway.
            cursor.execute("SET SESSION innodb_lock_wait_timeout = %s", (timeout,))
        return self._connection

    def _create_what_is_missing(self, cursor: Any) -> None:
        """CREATE only what does not exist, so that a user without CREATE works once it all does."""
        database = self._settings.database
        cursor.execute("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = %s", (database,))
        if not cursor.fetchall():
            try:
                # The name was validated as [A-Za-z0-9_]{1,64}: safe to quote as an identifier.
                cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
            except mysql.connector.Error as exc:
                if getattr(exc, "errno", None) in _ACCESS_DENIED:
                    # The schema list only shows databases the user has a privilege on.
                    raise StoreAccessError(
                        f"{self._where()}: user {self._settings.user!r} has no privileges on database "
                        f"{database!r}, or it does not exist and the user may not create it: grant "
                        f"{NEEDED_PRIVILEGES} on `{database}`.* to MYSQL_USER") from None
                raise
        cursor.execute(f"USE `{database}`")
        cursor.execute("SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s", (database,))
        existing = {row[0] for row in cursor.fetchall()}
        for table, statement in zip(TABLES, SCHEMA, strict=True):
            if table in existing:
                continue
            try:
                cursor.execute(statement)
            except mysql.connector.Error as exc:
                if getattr(exc, "errno", None) in _ACCESS_DENIED:
                    raise self._lacks("CREATE", f" to create table {table}") from None
                raise
        if "weather" in existing:
            self._add_provider_column_if_missing(cursor)

    def _add_provider_column_if_missing(self, cursor: Any) -> None:
        """A weather table from an earlier version has no provider column: add it. MySQL 8 has no
        ADD COLUMN IF NOT EXISTS (MariaDB has), so information_schema says, on both."""
        database = self._settings.database
        cursor.execute("SELECT COLUMN_NAME FROM information_schema.COLUMNS"
                       " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'weather' AND COLUMN_NAME = 'provider'",
                       (database,))
        if cursor.fetchall():
            return
        statement = f"ALTER TABLE `{database}`.weather ADD COLUMN {PROVIDER_COLUMN}"
        try:
            cursor.execute(statement)
        except mysql.connector.Error as exc:
            errno = getattr(exc, "errno", None)
            if errno == errorcode.ER_DUP_FIELDNAME:
                return  # another instance, starting at the same moment, added it first
            if errno in _ACCESS_DENIED:
                raise StoreAccessError(
                    f"{self._where()}: user {self._settings.user!r} lacks the ALTER privilege on database "
                    f"{database!r} to add the provider column to table weather (made by an earlier "
                    f"version): grant ALTER on `{database}`.weather to MYSQL_USER once, or have an "
                    f"administrator run {statement}") from None
            raise

    def _where(self) -> str:
        return f"MySQL at {self._settings.host}:{self._settings.port}"

    def _lacks(self, privilege: str, why: str = "") -> StoreAccessError:
        s = self._settings
        return StoreAccessError(
            f"{self._where()}: user {s.user!r} lacks the {privilege} privilege on database {s.database!r}{why}: "
            f"grant {NEEDED_PRIVILEGES} on `{s.database}`.* to MYSQL_USER")

    def _translate(self, exc: mysql.connector.Error) -> StoreUnavailableError:
        s = self._settings
        errno = getattr(exc, "errno", None)
        where = self._where()
        if errno == errorcode.ER_ACCESS_DENIED_ERROR:
            return StoreAccessError(
                f"{where} refused the login of user {s.user!r}: check MYSQL_USER and MYSQL_PASSWORD")
        if errno in _ACCESS_DENIED:
            # "INSERT command denied to user ..." names the privilege; the rest of the text names
            # the user's host, which adds nothing here.
            denied = re.match(r"(\w+) command denied", str(getattr(exc, "msg", "")))
            return self._lacks(denied.group(1).upper() if denied else f"needed ({errno})")
        if _connection_lost(exc) or errno is None or errno >= 2000:
            return StoreUnavailableError(f"{where} is unreachable ({errno})")
        return StoreUnavailableError(f"{where} failed ({errno}: {exc.msg})")


def _connection_lost(exc: mysql.connector.Error) -> bool:
    errno = getattr(exc, "errno", None)
    if errno in _CONNECTION_LOST:
        return True
    # "MySQL Connection not available" and friends come without a server error number.
    return errno in (None, -1) and isinstance(
        exc, (mysql.connector.OperationalError, mysql.connector.InterfaceError))


def _naive_utc(moment: datetime) -> datetime:
    return moment.astimezone(timezone.utc).replace(tzinfo=None)
