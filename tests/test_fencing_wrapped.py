"""DistributedMutex.fencing with connections that are not the driver's own class: a subclass made
by sqlite3.connect(factory=...), a program's wrapper that delegates to a connection (and hands out
the driver's cursors, or wraps them too). SQLite must still get its own locking (BEGIN IMMEDIATE,
no FOR UPDATE, which it does not know), and the others FOR UPDATE."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import mysql.connector
import pytest

from DistributedMutex.errors import StaleTermError
from DistributedMutex.fencing import Fence, fenced_update
from harness.services import MySQLServer


class Subclassed(sqlite3.Connection):
    """What sqlite3.connect(factory=...) makes: sqlite3's connection, in a module of the program's."""


class Instrumented:
    """A program's wrapper (to time or log its queries, say): the DB-API calls delegate, and the
    cursors are the driver's own."""

    def __init__(self, connection: Any) -> None:
        self.wrapped = connection

    def cursor(self) -> Any:
        return self.wrapped.cursor()

    def commit(self) -> None:
        self.wrapped.commit()

    def rollback(self) -> None:
        self.wrapped.rollback()

    def close(self) -> None:
        self.wrapped.close()


class WrappedCursor:
    def __init__(self, cursor: Any) -> None:
        self.wrapped = cursor

    def execute(self, sql: str, parameters: Any = ()) -> None:
        self.wrapped.execute(sql, parameters)

    def fetchall(self) -> list[Any]:
        return list(self.wrapped.fetchall())

    @property
    def rowcount(self) -> int:
        return int(self.wrapped.rowcount)

    def close(self) -> None:
        self.wrapped.close()


class FullyWrapped(Instrumented):
    """Its cursors wrapped too: nothing of sqlite3's shows, so the program says dialect="sqlite"."""

    def cursor(self) -> Any:
        return WrappedCursor(self.wrapped.cursor())


Make = Callable[[Path], tuple[Any, dict[str, str]]]
SQLITE_CONNECTIONS: dict[str, Make] = {
    "factory-subclass": lambda path: (sqlite3.connect(path, isolation_level=None, factory=Subclassed), {}),
    # A wrapper's module declares no paramstyle: the program passes it (a one-line error says so).
    "wrapper": lambda path: (Instrumented(sqlite3.connect(path, isolation_level=None)), {"paramstyle": "qmark"}),
    "wrapper-wrapped-cursors": lambda path: (FullyWrapped(sqlite3.connect(path, isolation_level=None)),
                                             {"paramstyle": "qmark", "dialect": "sqlite"}),
}


@pytest.fixture(params=list(SQLITE_CONNECTIONS))
def wrapped(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, dict[str, str], Path]]:
    path = tmp_path / "fence.db"
    setup = sqlite3.connect(path, isolation_level=None)
    setup.execute("CREATE TABLE jobs (id INTEGER PRIMARY KEY, state TEXT NOT NULL, term BIGINT NOT NULL)")
    setup.execute("INSERT INTO jobs VALUES (1, 'new', 0)")
    setup.close()
    connection, options = SQLITE_CONNECTIONS[request.param](path)
    yield connection, options, path
    connection.close()


def test_a_wrapped_sqlite_connection_gets_sqlite_s_locking(wrapped: tuple[Any, dict[str, str], Path]) -> None:
    connection, options, path = wrapped
    fence = Fence(connection, "job", **options)
    fence.create_table()
    fence.register(5)
    with pytest.raises(StaleTermError):
        fence.register(4)
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        with fence.transaction(5) as cursor:
            # SQLite's write lock, taken at BEGIN (IMMEDIATE), before the term was read: no other
            # writer can begin until this transaction ends.
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            cursor.execute("UPDATE jobs SET state = 'fenced' WHERE id = 1")
        assert other.execute("SELECT state FROM jobs").fetchall() == [("fenced",)]
    finally:
        other.close()

    assert fenced_update(connection, "jobs", key={"id": 1}, values={"state": "done"}, term=5, **options) is True
    # Refused: the statement changes no row, and the check that tells "refused" from "already so"
    # reads the row, in SQLite's terms.
    assert fenced_update(connection, "jobs", key={"id": 1}, values={"state": "stale"}, term=4, **options) is False
    connection.commit()
    check = sqlite3.connect(path)
    assert check.execute("SELECT state, term FROM jobs").fetchall() == [("done", 5)]
    check.close()


def test_a_wrapped_mariadb_connection_says_its_dialect(mysql_server: MySQLServer, database: str) -> None:
    with mysql_server.connect() as setup, setup.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")
    raw = mysql.connector.connect(host=mysql_server.host, port=mysql_server.port, user=mysql_server.user,
                                  password=mysql_server.password, database=database, connection_timeout=5,
                                  autocommit=True)
    connection = Instrumented(raw)
    try:
        options = {"paramstyle": "pyformat", "dialect": "mariadb"}
        fence = Fence(connection, "job", **options)
        fence.create_table()
        fence.register(5)
        with pytest.raises(StaleTermError):
            fence.register(4)
        cursor = raw.cursor()
        cursor.execute("CREATE TABLE jobs (id INT PRIMARY KEY, state VARCHAR(20) NOT NULL, term BIGINT NOT NULL)")
        cursor.execute("INSERT INTO jobs VALUES (1, 'new', 0)")
        cursor.close()
        assert fenced_update(connection, "jobs", key={"id": 1}, values={"state": "done"}, term=5, **options) is True
        # The same values again under the same term: MySQL counts no changed row, the check says so.
        assert fenced_update(connection, "jobs", key={"id": 1}, values={"state": "done"}, term=5, **options) is True
        assert fenced_update(connection, "jobs", key={"id": 1}, values={"state": "stale"}, term=4, **options) is False
    finally:
        connection.close()
