"""What the readings' stores share: the Store interface, a stored reading, the fencing rule, and
one connection used by one caller at a time.

Two stores implement it (mysql.py, sqlite.py) with the same tables and the same fencing rule, the
leadership term being the fencing token: a new leader registers its term before its first write,
and every write checks, in its transaction, that the stored term is its own.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Generic, Protocol, TypeVar

from distributed_mutex_demo.config import OPENWEATHERMAP
from distributed_mutex_demo.weather import Reading
from DistributedMutex.backend import MAX_TERM
from DistributedMutex.errors import StaleTermError


@dataclass(frozen=True)
class StoredReading:
    city: str
    temperature: float
    humidity: int
    description: str
    observed_at: datetime  # UTC
    leader_id: str
    term: int
    provider: str = OPENWEATHERMAP


class Store(Protocol):
    """Where the leader writes readings under the fencing check and the workers read them.

    Every method may raise StoreUnavailableError (StoreAccessError when only a person can help);
    register_term and write raise StaleTermError when a newer term is recorded."""

    description: str  # for the start-up line: "MySQL at host:port, database weather"

    def register_term(self, term: int, leader_id: str) -> None: ...

    def write(self, readings: Iterable[Reading], term: int, leader_id: str,
              still_leader: Callable[[], bool] = lambda: True) -> int: ...

    def latest(self) -> list[StoredReading]: ...

    def stored_term(self) -> int | None: ...

    def check_access(self) -> None: ...

    def close(self) -> None: ...


def check_may_register(stored: int | None, term: int) -> None:
    """The fencing rule, registering: a term older than the stored one is refused."""
    check_term_in_range(stored, term)
    if stored is not None and stored > term:
        raise StaleTermError(term, stored)


def check_may_write(stored: int | None, term: int, still_leader: Callable[[], bool]) -> None:
    """The fencing rule, writing (inside the transaction that holds the fencing row): the stored
    term must be ours, and we must still lead; otherwise the write is rolled back."""
    check_term_in_range(stored, term)
    if stored != term:
        raise StaleTermError(term, stored if stored is not None else 0)
    if not still_leader():
        raise StaleTermError(term, term, f"leadership of term {term} ended before the commit")


class Closable(Protocol):
    def close(self) -> object: ...


C = TypeVar("C", bound=Closable)


class OneConnection(Generic[C]):
    """What both stores share: one connection (of the driver's type C), used by one caller at a
    time under ``_lock``, dropped when it breaks (and reopened by the next call), let go of on close."""

    def __init__(self) -> None:
        self._connection: C | None = None
        self._schema_ready = False
        self._lock = threading.Lock()

    def close(self) -> None:
        # An abandoned call may still hold the lock (and the connection): do not wait for it.
        if self._lock.acquire(timeout=0.5):
            try:
                self._drop_connection()
            finally:
                self._lock.release()

    def _drop_connection(self) -> None:
        if self._connection is not None:
            close_quietly(self._connection)
            self._connection = None


def close_quietly(closable: Closable) -> None:
    try:
        closable.close()
    except Exception:  # noqa: BLE001 - it is broken already; we only let go of it
        pass


def check_term_in_range(stored: int | None, term: int) -> None:
    """A term above the highest there is (backend.MAX_TERM) is refused like a stale one, before
    the database sees it: SQLite and MySQL cannot bind 2^63 and above (an OverflowError or a
    driver error would escape the leader task), and no election reaches it. The stored term is
    reported as it is, so that the leader does not try to move its term past it."""
    if not 0 <= term <= MAX_TERM:
        raise StaleTermError(term, stored if stored is not None else 0,
                             f"term {term} is outside 0..{MAX_TERM}, the terms a store holds")
