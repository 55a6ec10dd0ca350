"""Fencing at the source: the leader's write runs in a transaction that the lease row itself guards.

    with leased_transaction(connection, "weather-leader", ctx.identity.instance_id, ctx.term) as cursor:
        cursor.execute("INSERT INTO readings ...")   # commits only if our lease still holds

The transaction first reads the election's lease row ``FOR SHARE``: it goes on only if the row
names this holder, in this term, and its lease has not ended by the server's clock; otherwise
StaleTermError, and nothing written in it remains. The share lock lasts until the commit, so a new
holder's acquire (an UPDATE of that row) waits for this write to commit or roll back: a leader that
was paused past its lease and wakes up finds a newer term there and cannot write, even to tables
that have no term column of their own. The data must live in the same database as the lease table.

For psycopg 3 connections (autocommit or not; inside an open transaction it becomes a savepoint,
and the check's lock then lasts until that outer transaction ends).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from DistributedMutex.backends.postgres.arguments import DEFAULT_TABLE, check_election, check_table
from DistributedMutex.backends.postgres.sql import CHECK_HOLDER
from DistributedMutex.errors import ConfigurationError, StaleTermError

__all__ = ["leased_transaction"]


@contextmanager
def leased_transaction(connection: Any, election: str, holder: str, term: int, *,
                       table: str = DEFAULT_TABLE) -> Iterator[Any]:
    """A transaction on ``connection`` (psycopg 3) in which writes happen only while ``holder``
    holds the lease of ``election`` in ``term``; yields a cursor. Raises StaleTermError otherwise."""
    check_election("election", election)
    check_table("table", table)
    if isinstance(term, bool) or not isinstance(term, int) or term <= 0:
        raise ConfigurationError("term", f"must be a positive integer (a leadership's term), got {term!r}")
    transaction = getattr(connection, "transaction", None)
    if not callable(transaction):
        raise ConfigurationError("connection", f"must be a psycopg 3 connection, got {type(connection).__name__}")
    with transaction():
        cursor = connection.cursor()
        try:
            cursor.execute(CHECK_HOLDER.format(table=table), {"name": election})
            row = cursor.fetchone()
            if row is None:
                raise StaleTermError(term, 0, f"election {election!r} has no lease row in {table}")
            stored_holder, stored_term, current = row[0], int(row[1]), bool(row[2])
            if stored_term != term or stored_holder != holder:
                raise StaleTermError(term, stored_term, f"the lease of {election!r} is in term {stored_term} "
                                                        f"(held by {stored_holder!r}), not {holder!r}'s term {term}")
            if not current:
                raise StaleTermError(term, stored_term, f"the lease of {election!r} in term {term} has ended "
                                                        "by the server's clock")
            yield cursor
        finally:
            cursor.close()
