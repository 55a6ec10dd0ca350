"""One connection to PostgreSQL for the election's statements: bounded, and replaced when it breaks.

    connect     in a helper thread, given up after the call timeout (libpq's connect_timeout cannot
                go below 2 s, longer than a renew interval)
    each call   BEGIN; SET LOCAL bounds; the statement; COMMIT, in one simple query bound on the
                client (no prepared statement, no session state: PgBouncer's transaction pooling)
    watchdog    a call that outlives its bound (a server or network that stopped answering, which
                statement_timeout cannot end) has its socket shut down, so that it fails at once
    errors      the driver's errors become the library's: a lost connection or a timeout is a
                storage outage (StorageUnavailableError), a refusal only a person can fix is
                StorageRejectedError; no message shows the URL's password
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from typing import Any

import psycopg
from psycopg import errors as pg_errors

from DistributedMutex.backends.postgres.arguments import mask_url, url_password
from DistributedMutex.backends.postgres.sql import BOUNDS, DDL
from DistributedMutex.errors import BackendError, StorageRejectedError, StorageUnavailableError

log = logging.getLogger("DistributedMutex.backends.postgres")

Row = tuple[Any, ...]
# Server answers at connect time that may heal by themselves (the rest of a FATAL is for a person).
# "not yet accepting connections": a server restarting after a crash, replaying its WAL (57P03).
_TRANSIENT_FATAL = ("starting up", "shutting down", "too many", "recovery", "terminating connection",
                    "accepting connections",
                    "no more connections", "server login has been failing", "pgbouncer cannot connect")
# SQLSTATE classes that only a person can fix: privileges, a missing database, a wrong password.
_REJECTED_STATES = {"42501", "28000", "28P01", "3D000", "3F000", "42P01"}


def connect_options(call_timeout: float, application_name: str) -> dict[str, Any]:
    """libpq parameters for every connection: autocommit (each call brings its own BEGIN), no
    prepared statements, a dead peer noticed within a few seconds even with no statement running."""
    return {"autocommit": True, "prepare_threshold": None, "cursor_factory": psycopg.ClientCursor,
            "connect_timeout": 2, "application_name": application_name[:63], "keepalives": 1,
            "keepalives_idle": 2, "keepalives_interval": 1, "keepalives_count": 2,
            "tcp_user_timeout": max(1000, int(call_timeout * 2000))}


def bounded_connect(url: str, call_timeout: float, application_name: str, what: str) -> psycopg.Connection[Any]:
    """Connect within ``call_timeout``; a connection that arrives later is closed by its thread."""
    outcome: list[Any] = []
    done = threading.Event()
    abandoned = threading.Event()

    def attempt() -> None:
        try:
            outcome.append(psycopg.connect(url, **connect_options(call_timeout, application_name)))
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
            outcome.append(exc)
        done.set()
        if abandoned.is_set() and isinstance(outcome[0], psycopg.Connection):
            outcome[0].close()

    threading.Thread(target=attempt, name="postgres-connect", daemon=True).start()
    if not done.wait(call_timeout):
        abandoned.set()
        if done.is_set() and isinstance(outcome[0], psycopg.Connection):  # arrived just now
            return outcome[0]
        raise StorageUnavailableError(f"PostgreSQL at {mask_url(url)} did not accept a connection within "
                                      f"{call_timeout:g} s ({what})")
    if isinstance(outcome[0], BaseException):
        raise translate(outcome[0], url, what) from None
    connection: psycopg.Connection[Any] = outcome[0]
    return connection


class Session:
    """The election's connection: one call at a time, each in a transaction of its own."""

    def __init__(self, url: str, table: str, call_timeout: float, application_name: str) -> None:
        self._url = url
        self._table = table
        self._call_timeout = call_timeout
        self._application_name = application_name
        self._connection: psycopg.Connection[Any] | None = None
        self._table_ready = False
        self._lock = threading.Lock()
        self._watchdog = _Watchdog()

    def run(self, statement: str, params: dict[str, Any], what: str) -> list[Row]:
        """Run one of sql.py's statements in its own bounded transaction; the rows it returned."""
        # A call abandoned by the loop may still hold the connection: wait no longer than a call.
        if not self._lock.acquire(timeout=self._call_timeout):
            raise StorageUnavailableError(f"PostgreSQL: an earlier call is still waiting for its answer ({what})")
        try:
            for attempt in (1, 2):
                try:
                    return self._run_once(statement, params, what)
                except pg_errors.UndefinedTable:
                    # Dropped (or never made) since we last looked: make it again, once.
                    self._table_ready = False
                    if attempt == 2:
                        raise
                except psycopg.Error as exc:
                    self._drop()
                    raise translate(exc, self._url, what) from None
            raise AssertionError("unreachable")
        except psycopg.Error as exc:
            self._drop()
            raise translate(exc, self._url, what) from None
        finally:
            self._lock.release()

    def close(self) -> None:
        if self._lock.acquire(timeout=0.5):
            try:
                self._drop()
            finally:
                self._lock.release()
        self._watchdog.stop()

    # -- plumbing ----------------------------------------------------------------------------

    def _run_once(self, statement: str, params: dict[str, Any], what: str) -> list[Row]:
        connection = self._connect(what)
        if not self._table_ready:
            self._execute(connection, DDL.format(table=self._table), {}, what)
            self._table_ready = True
        return self._execute(connection, statement.format(table=self._table), params, what)

    def _execute(self, connection: psycopg.Connection[Any], statement: str, params: dict[str, Any],
                 what: str) -> list[Row]:
        ms = max(1, int(self._call_timeout * 1000))
        query = f"BEGIN; {BOUNDS.format(ms=ms, idle_ms=2 * ms)}; {statement}; COMMIT"
        self._watchdog.arm(connection.fileno(), time.monotonic() + self._call_timeout + 0.25)
        try:
            cursor = connection.cursor()
            try:
                try:
                    cursor.execute(query, params)
                except psycopg.Error:
                    # The server skipped the rest, COMMIT included: end the failed transaction.
                    if not connection.closed and connection.info.transaction_status != 0:
                        connection.execute("ROLLBACK")
                    raise
                rows: list[Row] = []
                while True:  # BEGIN, three SETs, the statement, COMMIT: the statement's rows
                    if cursor.description is not None:
                        rows = list(cursor.fetchall())
                    if not cursor.nextset():
                        return rows
            finally:
                cursor.close()
        finally:
            if self._watchdog.disarm():
                raise StorageUnavailableError(f"PostgreSQL at {mask_url(self._url)} did not answer within "
                                              f"{self._call_timeout:g} s ({what})")

    def _connect(self, what: str) -> psycopg.Connection[Any]:
        if self._connection is None or self._connection.closed:
            self._connection = bounded_connect(self._url, self._call_timeout, self._application_name, what)
        return self._connection

    def _drop(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except Exception:  # noqa: BLE001 - it is broken already; we only let go of it
                pass
            self._connection = None


def translate(exc: BaseException, url: str, what: str) -> BackendError:
    """A driver error as the library's, its text without the URL's password."""
    text = _clean(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__, url)
    where = f"PostgreSQL at {mask_url(url)}"
    if isinstance(exc, BackendError):
        return exc
    state = getattr(exc, "sqlstate", None)
    if state in _REJECTED_STATES or (state or "").startswith("28"):
        return StorageRejectedError(f"{where} refused to {what}: {text}", code=state)
    if isinstance(exc, psycopg.OperationalError) and state is None and "FATAL" in text \
            and not any(word in text for word in _TRANSIENT_FATAL):
        # A refusal at connect time: unknown role or database, a wrong password, pg_hba.conf.
        return StorageRejectedError(f"{where} refused the connection ({what}): {_after_fatal(text)}")
    return StorageUnavailableError(f"{where}: could not {what} ({type(exc).__name__}: {text})", code=state)


def _after_fatal(text: str) -> str:
    return text.split("FATAL:", 1)[1].strip() if "FATAL:" in text else text


def _clean(text: str, url: str) -> str:
    for secret in sorted(url_password(url), key=len, reverse=True):
        text = text.replace(secret, "***")
    return text[:300]


class _Watchdog:
    """Ends a call that outlives its bound by shutting its socket down (one thread per backend).

    statement_timeout is the server's: a server that stopped (SIGSTOP, a dead host, a stalled
    proxy) never sends the cancellation. Shutting the socket makes the blocked read return at
    once, and the driver raises OperationalError."""

    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._armed: tuple[int, float] | None = None
        self._fired = False
        self._stopped = False
        self._thread: threading.Thread | None = None

    def arm(self, fd: int, deadline: float) -> None:
        with self._condition:
            self._armed, self._fired = (fd, deadline), False
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="postgres-watchdog", daemon=True)
                self._thread.start()
            self._condition.notify()

    def disarm(self) -> bool:
        """Whether the watchdog fired on this call."""
        with self._condition:
            self._armed = None
            return self._fired

    def stop(self) -> None:
        with self._condition:
            self._stopped, self._armed = True, None
            self._condition.notify()

    def _run(self) -> None:
        with self._condition:
            while not self._stopped:
                if self._armed is None:
                    self._condition.wait()
                    continue
                fd, deadline = self._armed
                remaining = deadline - time.monotonic()
                if remaining > 0:
                    self._condition.wait(remaining)
                    continue
                # Under the lock: disarm() (before the connection is closed) waits, so fd is still ours.
                _shutdown(fd)
                self._armed, self._fired = None, True


def _shutdown(fd: int) -> None:
    try:
        duplicate = socket.socket(fileno=os.dup(fd))
    except OSError:
        return
    try:
        duplicate.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    finally:
        duplicate.close()

