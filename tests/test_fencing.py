"""DistributedMutex.fencing on real databases: SQLite files, MariaDB and PostgreSQL (psycopg 3), each with a connection
in the driver's default transaction mode and one in autocommit mode (the fence begins its own
transaction then). The two "leaders" are two connections used from two threads."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mysql.connector
import pytest

from DistributedMutex import DistributedMutex, RoleContext
from DistributedMutex.backends.raft import RaftBackend
from DistributedMutex.errors import ConfigurationError, StaleTermError
from DistributedMutex.fencing import Fence, _render, fenced_update
from harness.postgres import PostgresServer, with_database
from harness.processes import wait_until
from harness.services import MySQLServer, rebindable_port

WAIT = 10.0  # bound of every wait for another thread


@dataclass
class Store:
    """A database under test: ``connect()`` opens a new connection to it."""

    connect: Callable[[], Any]
    # Whether the connection whose thread is given is waiting for a lock, as the database tells
    # (None: SQLite cannot tell; the test then checks that the waiting side has not finished).
    waits_for_lock: Callable[[Any], bool] | None = None

    def rows(self, sql: str) -> list[tuple[Any, ...]]:
        return self.execute(sql)

    def execute(self, *statements: str) -> list[tuple[Any, ...]]:
        """Run the statements on a connection of their own and commit; the last one's rows."""
        connection = self.connect()
        try:
            cursor = connection.cursor()
            for statement in statements:
                cursor.execute(statement)
            rows = [tuple(row) for row in cursor.fetchall()] if cursor.description else []
            connection.commit()
            return rows
        finally:
            connection.close()


def sqlite_store(path: Path, *, autocommit: bool) -> Store:
    def connect() -> sqlite3.Connection:
        # isolation_level=None: sqlite3's autocommit mode; "" (the default): it begins by itself.
        return sqlite3.connect(path, timeout=WAIT, check_same_thread=False,
                               isolation_level=None if autocommit else "")
    return Store(connect)


def mariadb_store(server: MySQLServer, database: str, *, autocommit: bool) -> Store:
    with server.connect() as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE IF NOT EXISTS `{database}`")

    def connect() -> Any:
        connection = mysql.connector.connect(host=server.host, port=server.port, user=server.user,
                                             password=server.password, database=database,
                                             connection_timeout=5, autocommit=autocommit)
        cursor = connection.cursor()
        cursor.execute("SET SESSION innodb_lock_wait_timeout = 10")  # a stuck test fails, not hangs
        cursor.close()
        return connection

    def waits_for_lock(connection: Any) -> bool:
        return bool(server.query("mysql", "SELECT 1 FROM information_schema.INNODB_TRX WHERE trx_state = "
                                          "'LOCK WAIT' AND trx_mysql_thread_id = %s", (connection.connection_id,)))
    return Store(connect, waits_for_lock)


def postgresql_store(server: PostgresServer, database: str, *, autocommit: bool) -> Store:
    import psycopg

    def connect() -> Any:
        # A stuck test fails instead of hanging: no lock is waited for longer than 10 s.
        return psycopg.connect(with_database(server.url, database), autocommit=autocommit, connect_timeout=5,
                               options="-c lock_timeout=10000")

    def waits_for_lock(connection: Any) -> bool:
        return bool(server.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
                                   (connection.info.backend_pid,)))
    return Store(connect, waits_for_lock)


@pytest.fixture
def postgres_database(postgres_server: PostgresServer) -> Iterator[str]:
    name = postgres_server.create_database()
    yield name
    postgres_server.drop_database(name)


@pytest.fixture(params=["sqlite", "sqlite-autocommit", "mariadb", "mariadb-autocommit", "postgresql",
                        "postgresql-autocommit"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    autocommit = request.param.endswith("-autocommit")
    if request.param.startswith("sqlite"):
        return sqlite_store(tmp_path / "fence.db", autocommit=autocommit)
    if request.param.startswith("postgresql"):
        return postgresql_store(request.getfixturevalue("postgres_server"),
                                request.getfixturevalue("postgres_database"), autocommit=autocommit)
    return mariadb_store(request.getfixturevalue("mysql_server"), request.getfixturevalue("database"),
                         autocommit=autocommit)


@pytest.fixture
def connections(store: Store) -> Iterator[Callable[[], Any]]:
    """Open connections for a test, all closed at its end."""
    opened: list[Any] = []

    def connect() -> Any:
        opened.append(store.connect())
        return opened[-1]
    yield connect
    for connection in opened:
        connection.close()


def notes_table(store: Store) -> None:
    store.execute("CREATE TABLE notes (text VARCHAR(100) NOT NULL, term BIGINT NOT NULL)")


def insert_note(fence: Fence, cursor: Any, text: str, term: int) -> None:
    placeholder = "?" if fence._style == "qmark" else "%s"
    cursor.execute(f"INSERT INTO notes (text, term) VALUES ({placeholder}, {placeholder})", (text, term))


def in_thread(target: Callable[[], None]) -> tuple[threading.Thread, list[BaseException]]:
    """Run ``target`` in a thread; its exception, if any, lands in the list."""
    errors: list[BaseException] = []

    def run() -> None:
        try:
            target()
        except BaseException as exc:  # noqa: BLE001 - handed over to the test, which fails on it
            errors.append(exc)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


# -- the race that matters ---------------------------------------------------------------------

def test_the_newer_leader_waits_for_the_older_ones_transaction_then_fences_it_out(
        store: Store, connections: Callable[[], Any]) -> None:
    notes_table(store)
    old, new = Fence(connections(), "report"), Fence(connections(), "report")
    old.create_table()
    old.register(5)
    inside, let_go, registered = threading.Event(), threading.Event(), threading.Event()

    def old_leader() -> None:  # a transaction in flight when the new leader comes
        with old.transaction(5) as cursor:
            insert_note(old, cursor, "by 5, before 6 registered", 5)
            inside.set()
            assert let_go.wait(WAIT), "never let go"

    def new_leader() -> None:
        new.register(6)
        registered.set()

    old_thread, old_errors = in_thread(old_leader)
    assert inside.wait(WAIT), f"the old leader never got into its transaction: {old_errors}"
    new_thread, new_errors = in_thread(new_leader)
    if store.waits_for_lock is not None:
        # Polled no faster than every 0.25 s: InnoDB refreshes INNODB_TRX only when it was last read
        # over 0.1 s ago, so faster polling would read one stale copy for ever.
        wait_until(lambda: store.waits_for_lock(new._connection), WAIT, "the new leader's register never "
                   "waited for the fence row's lock", interval=0.25)
    else:  # SQLite cannot say who waits: the registration must at least not get through
        assert not registered.wait(0.5), "the new leader registered while the old one's transaction was open"
    assert not registered.is_set()
    let_go.set()
    old_thread.join(WAIT)
    new_thread.join(WAIT)
    assert not old_errors and not new_errors, (old_errors, new_errors)
    assert registered.is_set()

    # The old leader, awake again, writes as if it still led: refused, and nothing of it remains.
    ran = []
    with pytest.raises(StaleTermError) as refused, old.transaction(5) as cursor:
        ran.append(True)
        insert_note(old, cursor, "by 5, after 6 registered", 5)
    assert not ran, "the block ran although a newer term was recorded"
    assert (refused.value.own_term, refused.value.stored_term) == (5, 6)
    assert str(refused.value) == ("write refused by the fencing check: fence 'report' in table fencing_terms "
                                  "has term 6, newer than this leader's term 5")
    with new.transaction(6) as cursor:
        insert_note(new, cursor, "by 6", 6)
    assert sorted(store.rows("SELECT text, term FROM notes")) == [("by 5, before 6 registered", 5), ("by 6", 6)]
    assert store.rows("SELECT name, term FROM fencing_terms") == [("report", 6)]


def test_the_older_leaders_transaction_is_refused_while_the_newer_one_writes(
        store: Store, connections: Callable[[], Any]) -> None:
    """Two leaders writing at once, 5 and 6, each in its own thread and connection: every write of
    5 that commits comes before 6's registration, and once 6 is in, none does."""
    notes_table(store)
    old, new = Fence(connections(), "report"), Fence(connections(), "report")
    old.create_table()
    old.register(5)
    started, refusal = threading.Event(), []

    def old_leader() -> None:
        deadline = time.monotonic() + WAIT
        while time.monotonic() < deadline:
            try:
                with old.transaction(5) as cursor:
                    insert_note(old, cursor, f"5-{time.monotonic()}", 5)
            except StaleTermError as exc:
                refusal.append(exc)
                return
            started.set()
            # A leader does other things between writes too. (SQLite's busy handler is not fair: a
            # writer that never lets go of the lock could starve the other until its busy timeout.)
            time.sleep(0.002)

    old_thread, errors = in_thread(old_leader)
    assert started.wait(WAIT), f"the old leader never wrote: {errors}"
    new.register(6)
    written_before = {text for (text,) in store.rows("SELECT text FROM notes WHERE term = 5")}
    old_thread.join(WAIT)
    assert not errors, errors
    assert refusal, f"the old leader wrote for {WAIT:g} s without being refused"
    assert {text for (text,) in store.rows("SELECT text FROM notes WHERE term = 5")} == written_before


def test_first_uses_at_once_create_one_row_and_keep_the_newest_term(store: Store,
                                                                     connections: Callable[[], Any]) -> None:
    Fence(connections(), "setup").create_table()
    five, six = Fence(connections(), "x"), Fence(connections(), "x")
    for round_ in range(8):
        five.name = six.name = f"first-{round_}"  # a row that does not exist yet
        both = threading.Barrier(2)
        outcome: dict[int, str] = {}
        threads = [in_thread(lambda f=fence, t=term, o=outcome, b=both: register_at_once(f, t, o, b))
                   for fence, term in ((five, 5), (six, 6))]
        for thread, errors in threads:
            thread.join(WAIT)
            assert not errors, errors  # no duplicate key nor deadlock gets out
        assert outcome[6] == "registered" and outcome[5] in ("registered", "refused")
        assert store.rows(f"SELECT term FROM fencing_terms WHERE name = 'first-{round_}'") == [(6,)]


def register_at_once(fence: Fence, term: int, outcome: dict[int, str], both: threading.Barrier) -> None:
    both.wait(WAIT)
    try:
        fence.register(term)
        outcome[term] = "registered"
    except StaleTermError:
        outcome[term] = "refused"


# -- register and transaction ------------------------------------------------------------------

def test_register_refuses_an_older_term_and_accepts_its_own_again(connections: Callable[[], Any],
                                                                  store: Store) -> None:
    fence = Fence(connections(), "job")
    fence.create_table()
    fence.create_table()  # if not exists
    fence.register(3)
    fence.register(3)  # the same leader again (a retry): fine
    fence.register(7)
    with pytest.raises(StaleTermError) as refused:
        fence.register(6)
    assert (refused.value.own_term, refused.value.stored_term) == (6, 7)
    assert store.rows("SELECT name, term FROM fencing_terms") == [("job", 7)]
    Fence(connections(), "another job").register(2)  # one row per name
    assert sorted(store.rows("SELECT name, term FROM fencing_terms")) == [("another job", 2), ("job", 7)]
    with Fence(connections(), "job").transaction(9):  # a newer leader that did not register: it does now
        pass
    with pytest.raises(StaleTermError):
        fence.register(8)
    assert store.rows("SELECT term FROM fencing_terms WHERE name = 'job'") == [(9,)]


def test_a_block_that_raises_leaves_nothing_not_even_its_term(store: Store, connections: Callable[[], Any]) -> None:
    notes_table(store)
    fence = Fence(connections(), "job")
    fence.create_table()
    fence.register(5)
    with pytest.raises(ZeroDivisionError), fence.transaction(7) as cursor:
        insert_note(fence, cursor, "by 7", 7)
        1 / 0  # noqa: B018
    assert store.rows("SELECT text FROM notes") == []
    assert store.rows("SELECT term FROM fencing_terms") == [(5,)]
    fence.register(6)  # the connection is usable again, and 7 was never recorded


def test_a_table_made_by_an_administrator_from_the_ddl(store: Store, connections: Callable[[], Any]) -> None:
    assert Fence.ddl("fences") == ("CREATE TABLE IF NOT EXISTS fences (name VARCHAR(200) NOT NULL PRIMARY KEY,"
                                   " term BIGINT NOT NULL)")
    store.execute(Fence.ddl("fences"))
    fence = Fence(connections(), "job", table="fences")  # no create_table: the first use adds the row
    fence.register(4)
    assert store.rows("SELECT name, term FROM fences") == [("job", 4)]


def test_sqlite_refuses_a_connection_with_a_transaction_open(tmp_path: Path) -> None:
    connection = sqlite3.connect(tmp_path / "open.db")
    try:
        fence = Fence(connection, "job")
        fence.create_table()
        connection.execute("CREATE TABLE t (x INTEGER)")
        connection.execute("INSERT INTO t VALUES (1)")  # sqlite3 began a transaction by itself
        with pytest.raises(ConfigurationError) as error:
            fence.register(1)
        assert str(error.value) == ("connection: has a transaction open (sqlite3's autocommit=False always has): "
                                    "commit it first, or connect with isolation_level=None")
        connection.commit()
        fence.register(1)
    finally:
        connection.close()


# -- the single guarded statement --------------------------------------------------------------

def test_fenced_update_applies_under_a_newer_or_equal_term_only(store: Store, connections: Callable[[], Any]) -> None:
    store.execute("CREATE TABLE jobs (id INTEGER NOT NULL PRIMARY KEY, state VARCHAR(20) NOT NULL,"
                  " term BIGINT NOT NULL DEFAULT 0)", "INSERT INTO jobs (id, state) VALUES (7, 'new')")
    old, new = connections(), connections()

    def update(connection: Any, state: str, term: int, job: int = 7) -> bool:
        applied = fenced_update(connection, "jobs", key={"id": job}, values={"state": state}, term=term)
        connection.commit()
        return applied

    assert update(old, "running", 5)
    assert update(old, "running", 5)  # the same again: applied (MySQL counts it as 0 rows changed)
    assert update(new, "taken over", 6)
    assert not update(old, "done by the old one", 5)  # refused: the row carries term 6
    assert not update(new, "done", 6, job=8)  # no such row
    assert store.rows("SELECT id, state, term FROM jobs") == [(7, "taken over", 6)]


def test_fenced_update_with_a_composite_key_and_another_term_column(store: Store,
                                                                    connections: Callable[[], Any]) -> None:
    store.execute("CREATE TABLE slots (region VARCHAR(10) NOT NULL, slot INTEGER NOT NULL, owner VARCHAR(20),"
                  " hits INTEGER, epoch BIGINT NOT NULL, PRIMARY KEY (region, slot))",
                  "INSERT INTO slots VALUES ('eu', 1, NULL, 0, 0)", "INSERT INTO slots VALUES ('eu', 2, NULL, 0, 0)")
    connection = connections()
    assert fenced_update(connection, "slots", key={"region": "eu", "slot": 2}, values={"owner": "b", "hits": 3},
                         term=4, term_column="epoch")
    connection.commit()
    assert store.rows("SELECT region, slot, owner, hits, epoch FROM slots ORDER BY slot") == [
        ("eu", 1, None, 0, 0), ("eu", 2, "b", 3, 4)]


# -- paramstyles -------------------------------------------------------------------------------

def test_every_paramstyle_is_rendered_from_the_same_statement() -> None:
    sql, params = "UPDATE t SET a = :v0, term = :term WHERE k = :k0 AND term <= :term", {"v0": 1, "term": 5, "k0": 9}
    assert _render(sql, params, "qmark") == ("UPDATE t SET a = ?, term = ? WHERE k = ? AND term <= ?", [1, 5, 9, 5])
    assert _render(sql, params, "format") == ("UPDATE t SET a = %s, term = %s WHERE k = %s AND term <= %s",
                                              [1, 5, 9, 5])
    assert _render(sql, params, "numeric") == ("UPDATE t SET a = :1, term = :2 WHERE k = :3 AND term <= :4",
                                               [1, 5, 9, 5])
    assert _render(sql, params, "pyformat") == (
        "UPDATE t SET a = %(v0)s, term = %(term)s WHERE k = %(k0)s AND term <= %(term)s", params)
    assert _render(sql, params, "named") == (sql, params)


def test_a_paramstyle_given_explicitly_is_used(tmp_path: Path, mysql_server: MySQLServer, database: str) -> None:
    """sqlite3 speaks named as well as qmark; mysql-connector format as well as pyformat."""
    lite = sqlite3.connect(tmp_path / "named.db", isolation_level=None)
    maria = mariadb_store(mysql_server, database, autocommit=False).connect()
    try:
        for connection, style in ((lite, "named"), (maria, "format")):
            fence = Fence(connection, "job", paramstyle=style)
            fence.create_table()
            fence.register(2)
            with pytest.raises(StaleTermError):
                fence.register(1)
    finally:
        lite.close()
        maria.close()


# -- bad input: one line, naming the argument --------------------------------------------------

class NotADriverConnection:
    """Has the DB-API methods, but its module declares no paramstyle."""

    def cursor(self) -> None: ...

    def commit(self) -> None: ...

    def rollback(self) -> None: ...


TERM = "term: must be a positive integer (a leadership's term), got "
RANGE = "term: must be a positive integer (a leadership's term) of at most 9007199254740991, got "
NOT_IDENTIFIER = " is not a plain SQL identifier (letters, digits and _, not starting with a digit; schema.table allowed)"
STYLES = "qmark, numeric, named, format, pyformat"
DIALECTS = "sqlite, mysql, mariadb, postgresql"


@pytest.mark.parametrize(("make", "message"), [
    *[(lambda c, t=term: Fence(c, "job").register(t), TERM + repr(term))
      for term in (True, "5", 5.0, None)],
    # Out of range: the terms a store holds and a JSON reader reads exactly stop at 2^53 - 1.
    *[(lambda c, t=term: Fence(c, "job").register(t), RANGE + shown)
      for term, shown in ((0, "0"), (-3, "-3"), (2**53, str(2**53)), (2**63, str(2**63)),
                          (10**5000, "a number of 16610 bits"))],
    (lambda c: fenced_update(c, "jobs", key={"id": 1}, values={"a": 1}, term=2**63), RANGE + str(2**63)),
    (lambda c: Fence(c, "job", table="fences; DROP TABLE jobs"), "table: 'fences; DROP TABLE jobs'" + NOT_IDENTIFIER),
    (lambda c: Fence(c, "job", table="1fences"), "table: '1fences'" + NOT_IDENTIFIER),
    (lambda c: Fence(c, ""), "name: must be a non-empty string of at most 200 characters, got ''"),
    (lambda c: Fence(c, "job", paramstyle="dollar"), f"paramstyle: must be one of {STYLES}, got 'dollar'"),
    (lambda c: Fence(c, "job", dialect="oracle"), f"dialect: must be one of {DIALECTS}, got 'oracle'"),
    (lambda c: fenced_update(c, "jobs", key={"id": 1}, values={"a": 1}, term=1, dialect="SQLite"),
     f"dialect: must be one of {DIALECTS}, got 'SQLite'"),
    (lambda c: Fence("sqlite:///x.db", "job"),
     "connection: must be a DB-API 2.0 connection (with cursor(), commit() and rollback()), got str"),
    (lambda c: Fence(NotADriverConnection(), "job"),
     f"paramstyle: cannot tell the paramstyle of NotADriverConnection: pass paramstyle= (one of {STYLES})"),
    (lambda c: fenced_update(c, "jobs", key={"id": 1}, values={"state": "x"}, term=0), RANGE + "0"),
    (lambda c: fenced_update(c, "jobs", key={}, values={"state": "x"}, term=1),
     "key: must name the row's key columns and their values, got none"),
    (lambda c: fenced_update(c, "jobs", key={"id": 1}, values={}, term=1),
     "values: must name at least one column to set, got none"),
    (lambda c: fenced_update(c, "jobs", key={"id": 1}, values={"state = 'x' --": 1}, term=1),
     "values: \"state = 'x' --\"" + NOT_IDENTIFIER),
    (lambda c: fenced_update(c, "jobs", key={"id": 1}, values={"term": 9}, term=1),
     "values: must not set 'term': fenced_update sets it to term"),
    (lambda c: fenced_update(c, "jobs", key={"id": 1}, values={"a": 1}, term=1, term_column="term)"),
     "term_column: 'term)'" + NOT_IDENTIFIER),
], ids=lambda value: None if callable(value) else value[:40])
def test_bad_input_is_one_line_naming_the_argument(tmp_path: Path, make: Callable[[Any], object],
                                                    message: str) -> None:
    connection = sqlite3.connect(tmp_path / "bad.db")
    try:
        with pytest.raises(ConfigurationError) as error:
            make(connection)
        assert str(error.value) == message
        assert "\n" not in message
        assert connection.execute("SELECT name FROM sqlite_master").fetchall() == []  # nothing was written
    finally:
        connection.close()


# -- with the election -------------------------------------------------------------------------

def test_a_leader_moves_its_term_past_a_store_that_has_seen_a_newer_one(tmp_path: Path) -> None:
    """The lease record was reset (a fresh Raft data directory here) while the database was kept:
    the store has term 40, the new leadership a lower one. The leader advances its term under its
    lease, registers, writes; its ctx.term is the new term."""
    database = tmp_path / "app.db"
    setup = sqlite3.connect(database, isolation_level=None)
    Fence(setup, "report").create_table()
    Fence(setup, "report").register(40)
    setup.execute("CREATE TABLE notes (text TEXT NOT NULL, term INTEGER NOT NULL)")
    setup.close()
    seen: dict[str, Any] = {}

    async def lead(ctx: RoleContext) -> None:
        assert ctx.term is not None and ctx.advance_term is not None
        connection = sqlite3.connect(database, isolation_level=None)
        try:
            fence = Fence(connection, "report")
            seen["first term"] = ctx.term
            try:
                fence.register(ctx.term)
            except StaleTermError as stale:
                seen["stored"] = stale.stored_term
                await ctx.advance_term(stale.stored_term + 1)
                fence.register(ctx.term)
            with fence.transaction(ctx.term) as cursor:
                cursor.execute("INSERT INTO notes VALUES ('hello', ?)", (ctx.term,))
            seen["term"] = ctx.term
        finally:
            connection.close()
            mutex.stop()

    backend = RaftBackend({"solo": ("127.0.0.1", rebindable_port())}, "solo", tmp_path / "raft",
                          election_timeout=(0.3, 0.6))
    mutex = DistributedMutex(lead, backend=backend)
    try:
        asyncio.run(asyncio.wait_for(mutex.run_async(), 20))
    finally:
        backend.close()
    assert seen.get("stored") == 40 and seen["first term"] < 40, seen
    assert seen["term"] == 41
    check = sqlite3.connect(database)
    assert check.execute("SELECT text, term FROM notes").fetchall() == [("hello", 41)]
    check.close()
