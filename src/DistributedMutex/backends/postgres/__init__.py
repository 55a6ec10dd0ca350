"""The PostgreSQL backend: a lease on one row of a table, by the server's clock (extra ``postgres``).

    backend.py     PostgresLeaseBackend: acquire, renew, release, advance_term on one row
    sql.py         its statements (one per call) and the table's definition
    connection.py  the connection under it: bounded calls, a watchdog, the driver's errors
    listener.py    LISTEN for prompt handover, on a connection of its own
    fencing.py     leased_transaction: a write refused by the database unless our lease still holds
    arguments.py   its arguments, checked, and the election timing its lease implies
"""

from __future__ import annotations

from DistributedMutex.backends import is_missing, missing_extra

try:
    from DistributedMutex.backends.postgres.backend import PostgresLeaseBackend
except ModuleNotFoundError as exc:
    if not is_missing(exc, "psycopg"):
        raise
    PostgresLeaseBackend = missing_extra("PostgresLeaseBackend", "psycopg", "postgres")  # type: ignore[misc]

__all__ = ["PostgresLeaseBackend"]
