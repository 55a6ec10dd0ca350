"""Fenced writes to a SQL database: the leadership term as a fencing token.

A lease cannot stop a leader that was paused past its lease from writing once it wakes up; the
database can, if every write carries the writer's term and the database refuses a term older than
one it has already seen (docs/fencing.md says why, at length). Two ways to make it refuse:

    fence = Fence(connection, "nightly-report")   # one row in a small table: the newest term
    fence.register(ctx.term)                      # a new leader fences out older terms at once
    with fence.transaction(ctx.term) as cursor:   # refused (StaleTermError) if a newer term is
        cursor.execute("INSERT ...")              # recorded; nothing written in it remains

    fenced_update(connection, "jobs", key={"id": 7}, values={"state": "done"}, term=ctx.term)
        # one statement: UPDATE jobs SET state = ?, term = ? WHERE id = ? AND term <= ?
        # True if it applied, False if the row carries a newer term (or is missing)

Any DB-API 2.0 connection works (sqlite3, mysql-connector-python, PyMySQL, psycopg): the
placeholders follow the driver's ``paramstyle``, and the fence row is locked the database's way
inside the transaction, SQLite by ``BEGIN IMMEDIATE`` (the database's write lock, taken before the
term is read), the others by ``SELECT ... FOR UPDATE`` (MySQL, MariaDB, PostgreSQL). A connection in
autocommit mode gets an explicit ``BEGIN``; otherwise the driver's own transaction is used. Nothing
here imports a driver: the connection brings its own.

SQLite is recognised by the connection or its cursors being sqlite3's (subclasses included), or by
a driver module named for it (pysqlite3, sqlcipher3). A connection wrapped in an object of another
kind (a pool's proxy, an instrumented connection) whose cursors are wrapped too is not: pass
``dialect="sqlite"`` (or "mysql", "mariadb", "postgresql"), and ``paramstyle`` likewise.

With the election: ``ctx.term`` is the token. A store that has a *newer* term than the lease (the
lease record was reset while the database was kept) makes ``register`` raise StaleTermError while
this instance really leads; the leader then moves its term past the store's, under its lease, and
registers again. A leader that is no longer the lease holder cannot do that (advance_term fails).

    try:
        fence.register(ctx.term)
    except StaleTermError as stale:
        await ctx.advance_term(stale.stored_term + 1)
        fence.register(ctx.term)

(In an ``async`` leader, run the database calls in ``asyncio.to_thread``: they block. docs/fencing.md
has complete examples.)
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Protocol

from DistributedMutex.backend import MAX_TERM
from DistributedMutex.errors import ConfigurationError, StaleTermError

__all__ = ["Fence", "fenced_update"]

log = logging.getLogger(__name__)

# A table or column: plain identifiers only, as they are written into SQL unquoted (``schema.table``
# allowed). Quoting differs per database (`x` or "x"); plain names need none anywhere.
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?")
# Our own statements are written with :name placeholders and rendered in the driver's paramstyle.
_PLACEHOLDER = re.compile(r":([A-Za-z_][A-Za-z0-9_]*)")
_PARAMSTYLES = ("qmark", "numeric", "named", "format", "pyformat")
# Only SQLite locks differently; the others all take SELECT ... FOR UPDATE.
_DIALECTS = ("sqlite", "mysql", "mariadb", "postgresql")
Parameters = Sequence[object] | Mapping[str, object]  # positional or named, as the paramstyle wants

# One portable definition (SQLite, MySQL/MariaDB, PostgreSQL): for administrators who create tables
# themselves, ``Fence.ddl()`` prints it for a given table name.
_DDL = "CREATE TABLE IF NOT EXISTS {table} (name VARCHAR(200) NOT NULL PRIMARY KEY, term BIGINT NOT NULL)"


class Connection(Protocol):
    """What this module needs of a DB-API 2.0 connection."""

    def cursor(self) -> Any: ...

    def commit(self) -> Any: ...

    def rollback(self) -> Any: ...


class Fence:
    """The newest term that wrote to one resource (``name``), kept in a row of ``table``.

    ``register(term)`` records a new leader's term; ``transaction(term)`` runs the caller's writes
    in a transaction that first checks, with the fence row locked, that no newer term is recorded.
    Use one Fence per connection, from one thread at a time (as the connection itself), and enter
    it with no transaction of your own open: the fence's transaction commits what the connection
    holds. ``paramstyle`` and ``dialect``: for a connection whose driver is not recognised (see the
    module's docstring).
    """

    def __init__(self, connection: Connection, name: str, *, table: str = "fencing_terms",
                 paramstyle: str | None = None, dialect: str | None = None) -> None:
        _check_connection(connection)
        if not isinstance(name, str) or not 0 < len(name) <= 200:
            raise ConfigurationError("name", f"must be a non-empty string of at most 200 characters, got {name!r}")
        self._connection = connection
        self.name = name
        self.table = _check_identifier("table", table)
        self._style = _check_paramstyle(paramstyle) if paramstyle is not None else _paramstyle_of(connection)
        self._dialect = _check_dialect(dialect)

    @staticmethod
    def ddl(table: str = "fencing_terms") -> str:
        """The table's definition, for those who may not create tables: an administrator runs it."""
        return _DDL.format(table=_check_identifier("table", table))

    def create_table(self) -> None:
        """Create the fence table if it does not exist (the row is added by the first use)."""
        cursor = self._connection.cursor()
        try:
            cursor.execute(self.ddl(self.table))
        finally:
            _close_quietly(cursor)
        # PostgreSQL's DDL is transactional; elsewhere this commits nothing.
        self._connection.commit()

    def register(self, term: int) -> None:
        """Record ``term`` as the newest one: from now on, writes under an older term are refused.

        A new leader calls it first, before its first write, so that its predecessor is fenced
        out from the moment it took over rather than from its own first write. Raises
        StaleTermError if a newer term is recorded (then nothing changes)."""
        with self.transaction(term):
            pass

    @contextmanager
    def transaction(self, term: int) -> Iterator[Any]:
        """A transaction in which the caller's writes are made under ``term``; yields a cursor.

        On entry, with the fence row locked until the end of the transaction: a newer term
        recorded raises StaleTermError (nothing is written); an older one is replaced by ``term``
        (as ``register`` would). The block's statements commit together at its end, or roll back
        if it raises. Do not commit inside the block: the lock would end with it.
        """
        term = _check_term("term", term)
        cursor = self._connection.cursor()
        try:
            explicit = self._open(cursor, term)
            try:
                yield cursor
            except BaseException:
                self._finish(cursor, explicit, commit=False)
                raise
            self._finish(cursor, explicit, commit=True)
        finally:
            _close_quietly(cursor)

    # -- plumbing ----------------------------------------------------------------------------

    def _open(self, cursor: Any, term: int) -> bool:
        """Begin, lock the fence row and check it; whether we issued BEGIN ourselves."""
        # SQLite has no SELECT ... FOR UPDATE: its lock is the whole database's, taken at BEGIN.
        sqlite = _is_sqlite(self._connection, cursor, self._dialect)
        for attempt in (1, 2):
            explicit = self._begin(cursor, sqlite)
            try:
                stored = self._locked_term(cursor, sqlite)
                if stored is None:
                    # First use of this name. Two first uses at once: one insert fails (a duplicate
                    # key, or a deadlock on MySQL's gap locks) and that one tries again, once,
                    # when the row exists and can be locked like any other time.
                    try:
                        self._execute(cursor, f"INSERT INTO {self.table} (name, term) VALUES (:name, :term)",
                                      term=term)
                    except Exception:
                        if attempt == 2:
                            raise
                        log.debug("fence %r: another first use created its row meanwhile; locking it", self.name)
                        self._finish(cursor, explicit, commit=False)
                        continue
                    return explicit
                if stored > term:
                    raise StaleTermError(term, stored, f"fence {self.name!r} in table {self.table} has term "
                                                       f"{stored}, newer than this leader's term {term}")
                if stored < term:
                    self._execute(cursor, f"UPDATE {self.table} SET term = :term WHERE name = :name", term=term)
                return explicit
            except BaseException:
                self._finish(cursor, explicit, commit=False)
                raise
        raise AssertionError("unreachable: the second attempt returns or raises")

    def _begin(self, cursor: Any, sqlite: bool) -> bool:
        if sqlite:
            # IMMEDIATE: the write lock now, before the term is read; a deferred transaction would
            # read first, and two writers could both see the old term.
            if getattr(self._connection, "in_transaction", False):
                raise ConfigurationError("connection", "has a transaction open (sqlite3's autocommit=False always "
                                                       "has): commit it first, or connect with isolation_level=None")
            cursor.execute("BEGIN IMMEDIATE")
            return True
        if _autocommit(self._connection):
            cursor.execute("BEGIN")  # MySQL, MariaDB and PostgreSQL all say it so
            return True
        return False  # the driver has begun (or will begin) a transaction by itself

    def _locked_term(self, cursor: Any, sqlite: bool) -> int | None:
        lock = "" if sqlite else " FOR UPDATE"
        self._execute(cursor, f"SELECT term FROM {self.table} WHERE name = :name{lock}")
        rows = cursor.fetchall()  # all of them: mysql-connector refuses the next statement otherwise
        return int(rows[0][0]) if rows else None

    def _execute(self, cursor: Any, sql: str, **params: object) -> None:
        cursor.execute(*_render(sql, {"name": self.name, **params}, self._style))

    def _finish(self, cursor: Any, explicit: bool, *, commit: bool) -> None:
        """Commit or roll back; a transaction we began with BEGIN ends with the statement too
        (psycopg2 and sqlite3 in autocommit mode ignore commit() for one they did not begin)."""
        if not commit:
            try:
                if explicit:
                    cursor.execute("ROLLBACK")
                else:
                    self._connection.rollback()
            except Exception as exc:  # noqa: BLE001 - the error that brought us here is the one to raise
                log.debug("fence %r: rollback failed too: %s", self.name, exc)
            return
        try:
            if explicit:
                cursor.execute("COMMIT")
            else:
                self._connection.commit()
        except BaseException:
            self._finish(cursor, explicit, commit=False)  # e.g. SQLite busy at COMMIT: do not leave it open
            raise


def fenced_update(connection: Connection, table: str, *, key: Mapping[str, object], values: Mapping[str, object],
                  term: int, term_column: str = "term", paramstyle: str | None = None,
                  dialect: str | None = None) -> bool:
    """One guarded statement: set ``values`` and ``term`` on the row ``key`` names, unless that row
    carries a newer term. True if the row now holds these values under ``term``, False if the row
    has a newer term or does not exist.

        UPDATE jobs SET state = ?, term = ? WHERE id = ? AND term <= ?

    For one existing row whose own ``term_column`` records the term that last wrote it (insert
    rows beforehand, with term 0). It does not commit: call ``connection.commit()`` as after any
    statement, or run it inside a transaction of your own. ``paramstyle``, ``dialect``: as for Fence.
    """
    _check_connection(connection)
    table = _check_identifier("table", table)
    term = _check_term("term", term)
    term_column = _check_identifier("term_column", term_column)
    if not key:
        raise ConfigurationError("key", "must name the row's key columns and their values, got none")
    if not values:
        raise ConfigurationError("values", "must name at least one column to set, got none")
    for argument, columns in (("key", key), ("values", values)):
        for column in columns:
            _check_identifier(argument, column)
    if term_column in values:
        raise ConfigurationError("values", f"must not set {term_column!r}: fenced_update sets it to term")
    style = _check_paramstyle(paramstyle) if paramstyle is not None else _paramstyle_of(connection)
    checked_dialect = _check_dialect(dialect)
    # Placeholders are numbered (v0, k0), not named after the columns, which may clash with "term".
    params: dict[str, object] = {"term": term}
    params.update({f"v{i}": value for i, value in enumerate(values.values())})
    params.update({f"k{i}": value for i, value in enumerate(key.values())})
    assignments = ", ".join(f"{column} = :v{i}" for i, column in enumerate(values))
    match = " AND ".join(f"{column} = :k{i}" for i, column in enumerate(key))
    cursor = connection.cursor()
    try:
        cursor.execute(*_render(f"UPDATE {table} SET {assignments}, {term_column} = :term"
                               f" WHERE {match} AND {term_column} <= :term", params, style))
        if cursor.rowcount is not None and cursor.rowcount > 0:
            return True
        # MySQL counts *changed* rows: the same values written again under the same term count 0.
        # The row holding our term tells those apart from a refused or missing row.
        lock = "" if _is_sqlite(connection, cursor, checked_dialect) else " FOR UPDATE"
        cursor.execute(*_render(f"SELECT 1 FROM {table} WHERE {match} AND {term_column} = :term{lock}",
                               params, style))
        return bool(cursor.fetchall())
    finally:
        _close_quietly(cursor)


def _render(sql: str, params: Mapping[str, object], paramstyle: str) -> tuple[str, Parameters]:
    """``sql`` written with ``:name`` placeholders, in the driver's paramstyle, with its parameters."""
    if paramstyle == "named":
        return sql, dict(params)
    if paramstyle == "pyformat":
        return _PLACEHOLDER.sub(r"%(\1)s", sql), dict(params)
    names = _PLACEHOLDER.findall(sql)
    if paramstyle == "qmark":
        return _PLACEHOLDER.sub("?", sql), [params[name] for name in names]
    if paramstyle == "format":
        return _PLACEHOLDER.sub("%s", sql), [params[name] for name in names]
    counter = iter(range(1, len(names) + 1))  # numeric: :1, :2, ... in order of appearance
    return _PLACEHOLDER.sub(lambda _: f":{next(counter)}", sql), [params[name] for name in names]


# -- checks ------------------------------------------------------------------------------------

def _check_term(argument: str, term: object) -> int:
    # bool is an int: True would be term 1.
    if isinstance(term, bool) or not isinstance(term, int):
        raise ConfigurationError(argument, f"must be a positive integer (a leadership's term), got {term!r}")
    if not 0 < term <= MAX_TERM:
        # A term of thousands of digits would not even print (Python 3.11+): say how long it is.
        shown = str(term) if term.bit_length() <= 64 else f"a number of {term.bit_length()} bits"
        raise ConfigurationError(argument, f"must be a positive integer (a leadership's term) of at most "
                                           f"{MAX_TERM}, got {shown}")
    return term


def _check_identifier(argument: str, name: object) -> str:
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name):
        raise ConfigurationError(argument, f"{name!r} is not a plain SQL identifier (letters, digits and _, "
                                           "not starting with a digit; schema.table allowed)")
    return name


def _check_connection(connection: object) -> None:
    if not all(callable(getattr(connection, method, None)) for method in ("cursor", "commit", "rollback")):
        raise ConfigurationError("connection", f"must be a DB-API 2.0 connection (with cursor(), commit() and "
                                               f"rollback()), got {type(connection).__name__}")


def _check_paramstyle(paramstyle: object) -> str:
    if paramstyle not in _PARAMSTYLES:
        raise ConfigurationError("paramstyle", f"must be one of {', '.join(_PARAMSTYLES)}, got {paramstyle!r}")
    return str(paramstyle)


def _check_dialect(dialect: object) -> str | None:
    if dialect is not None and dialect not in _DIALECTS:
        raise ConfigurationError("dialect", f"must be one of {', '.join(_DIALECTS)}, got {dialect!r}")
    return dialect


def _is_sqlite(connection: object, cursor: object, dialect: str | None) -> bool:
    """Whether the database is SQLite: as ``dialect`` says, else from the connection's or its
    cursor's class (a wrapper that hands out sqlite3's own cursors is recognised by them)."""
    if dialect is not None:
        return dialect == "sqlite"
    sqlite3 = sys.modules.get("sqlite3")  # loaded if the connection is sqlite3's: nothing to import
    if sqlite3 is not None and (isinstance(connection, sqlite3.Connection) or isinstance(cursor, sqlite3.Cursor)):
        return True
    # Drop-in builds of the module (pysqlite3, sqlcipher3) have classes of their own.
    return "sqlite" in type(connection).__module__.split(".")[0]


def _paramstyle_of(connection: object) -> str:
    """The driver module's ``paramstyle``: the connection class's module or the nearest package
    above it that has one (mysql.connector.connection -> mysql.connector), or else its base
    classes' (a subclass of the program's own, as sqlite3.connect(factory=...) makes)."""
    for cls in type(connection).__mro__:
        module = cls.__module__
        while module:
            style = getattr(sys.modules.get(module), "paramstyle", None)
            if style in _PARAMSTYLES:
                return str(style)
            module = module.rpartition(".")[0]
    raise ConfigurationError("paramstyle", f"cannot tell the paramstyle of {type(connection).__name__}: pass "
                                           f"paramstyle= (one of {', '.join(_PARAMSTYLES)})")


def _autocommit(connection: object) -> bool:
    """Whether each statement commits by itself: then the fence must say BEGIN."""
    getter = getattr(connection, "get_autocommit", None)  # PyMySQL (its autocommit is a method)
    if callable(getter):
        return bool(getter())
    flag = getattr(connection, "autocommit", False)  # mysql-connector, psycopg, psycopg2
    return flag if isinstance(flag, bool) else False


def _close_quietly(cursor: Any) -> None:
    try:
        cursor.close()
    except Exception:  # noqa: BLE001 - a cursor of a broken connection; the real error is raised elsewhere
        pass
