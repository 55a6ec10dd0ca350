"""Leader election on a row of a PostgreSQL table: a lease judged by the server's clock.

One row per election (sql.py). Acquiring is one statement that takes the row only when its lease
has ended by the server's clock (or was released, or is already ours) and adds one to the term;
renewing moves the lease's end, only for our token in our term; releasing ends it at once. The
holder acts only until its local monotonic deadline, counted from when its request was *sent*
(the loop's rule, as for the blob lease): whatever the clocks of the machines say, the server's
lease cannot have started before that moment, so it cannot end before the deadline either.

Through PgBouncer in transaction pooling mode: every call is one transaction of its own with no
session state (connection.py); LISTEN, which needs a session, goes to ``notify_url`` (the server
directly) or, when ``pooled`` says the URL goes through such a pooler and no ``notify_url`` is
given, is left out: the backend then polls, and says so once.
"""

from __future__ import annotations

import logging
import math
import os
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime

from DistributedMutex.backend import MAX_TERM, Held, Identity, LeaderRecord, Lease
from DistributedMutex.backends.postgres.arguments import (
    DEFAULT_CALL_TIMEOUT,
    DEFAULT_LEASE_DURATION,
    DEFAULT_TABLE,
    check_call_timeout,
    check_election,
    check_lease_duration,
    check_table,
    check_url,
    describe_url,
    postgres_timing,
)
from DistributedMutex.backends.postgres.connection import Session
from DistributedMutex.backends.postgres.listener import Listener
from DistributedMutex.backends.postgres.sql import ACQUIRE, ADVANCE_TERM, READ, RELEASE, RENEW
from DistributedMutex.errors import ConfigurationError, LeaseLostError, StorageUnavailableError
from DistributedMutex.timing import ElectionTiming

__all__ = ["PostgresLeaseBackend"]

log = logging.getLogger("DistributedMutex.backends.postgres")


class PostgresLeaseBackend:
    """Leader election on one row of ``table`` (created if missing) in a PostgreSQL database."""

    name = "postgres"

    def __init__(
        self,
        url: str,
        election: str = "leader",
        *,
        table: str = DEFAULT_TABLE,
        lease_duration: float = DEFAULT_LEASE_DURATION,
        call_timeout: float = DEFAULT_CALL_TIMEOUT,
        notify_url: str | None = None,
        pooled: bool = False,
        names: Mapping[str, str] | None = None,
    ) -> None:
        """``url``: a libpq URL (postgresql://user:password@host:5432/database), direct or through
        PgBouncer; ``election``: the row's name (one per election); ``lease_duration``: seconds on
        the server's clock (the loop's timing follows from it); ``call_timeout``: each statement's
        statement_timeout and the bound of each call, connecting included (below the renew
        interval); ``notify_url``: a direct URL for LISTEN when ``url`` goes through a pooler;
        ``pooled``: ``url`` goes through a transaction-pooling PgBouncer (then, without
        ``notify_url``, contenders poll); ``names``: the caller's names of these arguments."""
        self._names = dict(names or {})
        self._url = check_url(self._name("url"), url)
        self._election = check_election(self._name("election"), election)
        self._table = check_table(self._name("table"), table)
        self._lease_duration = check_lease_duration(self._name("lease_duration"), lease_duration)
        self._timing = postgres_timing(self._lease_duration)
        self._call_timeout = check_call_timeout(self._name("call_timeout"), call_timeout,
                                                self._timing.renew_interval)
        if not isinstance(pooled, bool):
            raise ConfigurationError(self._name("pooled"), f"must be True or False, got {pooled!r}")
        self._notify_url = check_url(self._name("notify_url"), notify_url) if notify_url is not None else None
        self._pooled = pooled
        # The channel is the table's: one LISTEN serves every election in it (the payload names one).
        self.channel = f"dm_lease_{self._table.replace('.', '_')}"[:63]
        # Our own id for the row: a grant whose answer was lost is recognised as ours on the next try.
        self._token = uuid.uuid4().hex
        self._session = Session(self._url, self._table, self._call_timeout, f"distributed-mutex {os.getpid()}")
        self._listener: Listener | None = None

    @property
    def lease_basis(self) -> str:
        """Where the lease's length comes from, for the message refusing a longer timing."""
        return f"lease_duration {self._lease_duration:g} s"

    @property
    def description(self) -> str:
        """Where the election happens, without user or password."""
        return f"PostgreSQL {describe_url(self._url)}, table {self._table}, election {self._election!r}"

    def default_timing(self) -> ElectionTiming:
        """See arguments.postgres_timing: 5/1.6/0.5 s, margin 1 s, with the default 5 s lease."""
        return self._timing

    # -- the ElectionBackend interface -------------------------------------------------------

    def acquire(self, identity: Identity, now: float) -> Lease | Held:
        rows = self._session.run(ACQUIRE, {
            "name": self._election, "holder": identity.instance_id, "host": identity.host, "pid": identity.pid,
            "token": self._token, "lease_ms": self._lease_ms, "channel": self.channel}, "acquire the lease")
        if not rows:  # taken by a contender whose row our statement's snapshot does not show yet
            return Held(None)
        term, holder, host, pid, acquired_at, granted, _ = rows[0]
        if not granted:
            return Held(LeaderRecord(holder, int(term), host, pid, _aware(acquired_at), "leased"))
        # Granted by the server's clock only once the last lease ended there: its holder, counting
        # from its own request's sending, stopped acting before that. Nobody to wait for.
        return Lease(term=int(term), token=self._token, sent_at=now, duration=self._lease_duration,
                     predecessor_until=-math.inf)

    def renew(self, lease: Lease, now: float) -> Lease:
        rows = self._session.run(RENEW, self._ours(lease), "renew the lease")
        if not rows:
            raise LeaseLostError(f"the lease on {self._election!r} is no longer ours (term {lease.term})")
        return Lease(term=lease.term, token=lease.token, sent_at=now, duration=self._lease_duration)

    def advance_term(self, lease: Lease, identity: Identity, at_least: int) -> Lease:
        if isinstance(at_least, bool) or not isinstance(at_least, int) or not 0 <= at_least <= MAX_TERM:
            raise ConfigurationError("at_least", f"must be a term from 0 to {MAX_TERM}, got {at_least!r}")
        rows = self._session.run(ADVANCE_TERM, {**self._ours(lease), "at_least": at_least}, "advance the term")
        if not rows:
            raise LeaseLostError(f"the lease on {self._election!r} is no longer ours (term {lease.term})")
        return Lease(term=int(rows[0][0]), token=lease.token, sent_at=lease.sent_at, duration=lease.duration)

    def release(self, lease: Lease) -> None:
        # No row: not ours any more (taken after it ran out); nothing to give back.
        self._session.run(RELEASE, {**self._ours(lease), "channel": self.channel}, "release the lease")

    def read_leader(self) -> LeaderRecord | None:
        try:
            rows = self._session.run(READ, {"name": self._election}, "read the lease")
        except StorageUnavailableError:
            raise
        if not rows:
            return None
        holder, term, host, pid, acquired_at, state = rows[0]
        return LeaderRecord(holder, int(term), host, pid, _aware(acquired_at), state)

    def watch(self, wake: Callable[[], None]) -> None:
        """LISTEN for grants and releases of this election (on ``notify_url``, else ``url``);
        through a transaction pooler without ``notify_url``, poll, and say so once."""
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        url = self._notify_url or (None if self._pooled else self._url)
        if url is None:
            log.info("PostgreSQL %s goes through a transaction pooler (%s) and no %s is given: LISTEN "
                     "needs a session of its own, so contenders poll every acquire interval instead of "
                     "being told of a release", describe_url(self._url), self._name("pooled"),
                     self._name("notify_url"))
            return
        self._listener = Listener(url, self.channel, self._election, wake, self._call_timeout,
                                  f"distributed-mutex listen {os.getpid()}")

    def listening(self, timeout: float) -> bool:
        """Whether the LISTEN connection is in place (waits up to ``timeout``)."""
        return self._listener is not None and self._listener.listening(timeout)

    def close(self) -> None:
        if self._listener is not None:
            self._listener.stop()
            self._listener = None
        self._session.close()

    # -- helpers -----------------------------------------------------------------------------

    @property
    def _lease_ms(self) -> int:
        return int(self._lease_duration * 1000)

    def _ours(self, lease: Lease) -> dict[str, object]:
        return {"name": self._election, "token": lease.token, "term": lease.term, "lease_ms": self._lease_ms}

    def _name(self, argument: str) -> str:
        return self._names.get(argument, argument)


def _aware(moment: object) -> datetime | None:
    return moment if isinstance(moment, datetime) else None
