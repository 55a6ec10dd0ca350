"""Fencing at the source: the leader's write runs in a transaction that the lease row itself guards.

    with leased_transaction(connection, "weather-leader", ctx.identity.instance_id, ctx.term) as cursor:
        cursor.execute("INSERT INTO readings ...")   # commits only if our lease still holds

The writes run first; the check comes last, sent in the same round trip as the COMMIT:

    SELECT 1 / count(*) FROM (SELECT FROM <table> WHERE name = .. AND holder = .. AND term = ..
                              AND expires_at > clock_timestamp() FOR SHARE) AS still_ours; COMMIT

A row that no longer names this holder, in this term, unexpired by the server's clock, counts 0:
the division fails, the server skips the COMMIT, and the transaction is rolled back (StaleTermError,
nothing written in it remains). Why this is safe: a grant of a new term is an UPDATE of that row.
If the grant commits before our check reads the row (or is under way and commits while our check
waits for its lock), the check sees the new term and we are refused. Otherwise our check holds the
row's share lock until our COMMIT, so the grant waits for it: our write is ordered before the new
term. Either way no write commits under a term that was already superseded, even into tables that
have no term column of their own. The data must live in the same database as the lease table.

Why last and not first: the share lock blocks every UPDATE of the row, the leader's own renew
included. Taken at the start of a transaction of several round trips (2.4 s on a slow network), it
made the renew wait past its lock timeout and cost the leader its lease; taken at the end, it is
held for the one round trip of the check and the COMMIT. The price: a deposed leader's statements
run before it learns it was deposed, and are rolled back.

For psycopg 3 connections, autocommit or not. Inside a transaction already open on the connection
it becomes a savepoint, checked before the savepoint is released; the check's lock then lasts until
that outer transaction ends (and blocks the renew that long), so prefer a connection of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from DistributedMutex.backends.postgres.arguments import DEFAULT_TABLE, check_election, check_table
from DistributedMutex.backends.postgres.sql import CHECK_HOLDER, STILL_HOLDER
from DistributedMutex.errors import ConfigurationError, StaleTermError

__all__ = ["leased_transaction"]


@contextmanager
def leased_transaction(connection: Any, election: str, holder: str, term: int, *,
                       table: str = DEFAULT_TABLE) -> Iterator[Any]:
    """A transaction on ``connection`` (psycopg 3) whose writes commit only if ``holder`` still
    holds the lease of ``election`` in ``term`` when it commits; yields a cursor. Raises
    StaleTermError otherwise, with everything written in it rolled back."""
    check_election("election", election)
    check_table("table", table)
    if isinstance(term, bool) or not isinstance(term, int) or term <= 0:
        raise ConfigurationError("term", f"must be a positive integer (a leadership's term), got {term!r}")
    if not callable(getattr(connection, "transaction", None)):
        raise ConfigurationError("connection", f"must be a psycopg 3 connection, got {type(connection).__name__}")
    import psycopg  # the caller's connection is psycopg's: it is installed; the library imports it lazily

    params = {"name": election, "holder": holder, "term": term}
    check = STILL_HOLDER.format(table=table)
    if connection.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
        yield from _in_savepoint(connection, check, params, election, holder, term, table)
        return
    cursor = connection.cursor()
    try:
        if connection.autocommit:
            cursor.execute("BEGIN")  # otherwise psycopg begins one itself on the first statement
        yield cursor
        # One simple query, bound on the client: the share lock lasts one round trip.
        with psycopg.ClientCursor(connection) as finish:
            try:
                finish.execute(f"{check}; COMMIT", params)
            except psycopg.errors.DivisionByZero:
                _roll_back(connection)
                raise _refusal(connection, election, holder, term, table) from None
    except BaseException:
        _roll_back(connection)
        raise
    finally:
        cursor.close()


def _in_savepoint(connection: Any, check: str, params: dict[str, Any], election: str, holder: str, term: int,
                  table: str) -> Iterator[Any]:
    import psycopg

    refused = False
    try:
        with connection.transaction(), connection.cursor() as cursor:
            yield cursor
            try:
                cursor.execute(check, params)
            except psycopg.errors.DivisionByZero:
                refused = True  # the savepoint is rolled back on the way out
                raise
    except psycopg.errors.DivisionByZero:
        if refused:
            raise _refusal(connection, election, holder, term, table) from None
        raise


def _roll_back(connection: Any) -> None:
    import psycopg

    if not connection.closed and connection.info.transaction_status in (
            psycopg.pq.TransactionStatus.INTRANS, psycopg.pq.TransactionStatus.INERROR):
        connection.execute("ROLLBACK")


def _refusal(connection: Any, election: str, holder: str, term: int, table: str) -> StaleTermError:
    """Why the check refused: the lease row as it reads now (its term only grows, and a lease
    that had ended counts as ended, even if its holder renewed it since)."""
    row = connection.execute(CHECK_HOLDER.format(table=table), {"name": election}).fetchone()
    if row is None:
        return StaleTermError(term, 0, f"election {election!r} has no lease row in {table}")
    stored_holder, stored_term = row[0], int(row[1])
    if stored_term != term or stored_holder != holder:
        return StaleTermError(term, stored_term, f"the lease of {election!r} is in term {stored_term} "
                                                 f"(held by {stored_holder!r}), not {holder!r}'s term {term}")
    return StaleTermError(term, stored_term, f"the lease of {election!r} in term {term} had ended by the "
                                             "server's clock when the write was to commit")
