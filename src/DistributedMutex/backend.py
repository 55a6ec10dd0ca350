"""The small interface between the election loop and a lease store.

The election loop (mutex.py) only ever talks to an ``ElectionBackend``; the Azure blob lease
(azure_lease.py) is one implementation, and others (ZooKeeper, Raft) plug in behind the same four
calls. Every call may block on I/O; the loop runs them off its event loop, bounded by a deadline
(except those the backend says answer at once: AT_ONCE below).
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from DistributedMutex.errors import ConfigurationError

if TYPE_CHECKING:
    from DistributedMutex.timing import ElectionTiming


# The highest term there is, for every backend and every store: below BIGINT's 2^63 - 1 (every
# SQL store can hold it) and exact as a JSON number in every language (2^53 - 1 is JavaScript's
# Number.MAX_SAFE_INTEGER), so a term shown in a status page or an API is the true one. No
# election reaches it (the Raft backend refuses terms above it on the wire and on disk).
MAX_TERM = 2**53 - 1

@dataclass(frozen=True)
class Identity:
    """Who an instance is, as recorded next to the lease for everyone to read."""

    instance_id: str
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)

    def __post_init__(self) -> None:
        # Every backend records it for the others to read (blob metadata, a znode's JSON, Raft's
        # heartbeats): an empty or unprintable one would name nobody.
        if not isinstance(self.instance_id, str) or not 1 <= len(self.instance_id) <= 256 \
                or not self.instance_id.isprintable() or self.instance_id.strip() != self.instance_id:
            raise ConfigurationError("instance_id", "must be 1-256 printable characters without leading or "
                                                    f"trailing spaces (this instance's name), got {self.instance_id!r}")

    @classmethod
    def default(cls) -> Identity:
        """This process: ``<hostname>-<pid>``, unique among the instances of one machine and
        across machines (what DistributedMutex uses when it is given no identity)."""
        host = socket.gethostname()
        return cls(f"{host}-{os.getpid()}", host=host)


@dataclass(frozen=True)
class LeaderRecord:
    """The current (or last known) leader as anyone can read it from the backend."""

    instance_id: str | None  # the leader's Identity.instance_id
    term: int
    host: str | None = None
    pid: int | None = None
    acquired_at: datetime | None = None
    lease_state: str | None = None  # backend's own word: "leased", "available", "expired", ...

    @property
    def is_held(self) -> bool:
        return self.lease_state == "leased"


@dataclass(frozen=True)
class Lease:
    """A lease this instance holds.

    ``sent_at`` is the monotonic time at which the acquiring request was *sent*: the lease cannot
    have started before it, so ``sent_at + duration`` is a safe lower bound of its expiry.

    ``predecessor_until`` (same clock): the latest moment the previous holder's lease could have
    lasted had the storage kept it. Past it in the normal case (the lease ran out or was released);
    later only when the storage granted a lease its last holder had just renewed, i.e. the storage
    lost the lease (an emulator restart, a broken lease). The holder must not act before this
    moment minus the safety margin: the previous holder stops acting by then.
    """

    term: int
    token: str
    sent_at: float
    duration: float
    predecessor_until: float = -math.inf


@dataclass(frozen=True)
class Held:
    """The answer to an acquire attempt when somebody else holds the lease.

    ``watched``: the backend has armed a notification that calls ``watch``'s ``wake()`` as soon as
    this answer may change (ZooKeeper: a watch on the znode just below ours). The loop then does
    not poll: it tries again when woken, and otherwise only every ``WATCHED_RECHECK`` seconds, a
    safety net against a notification that never comes.
    """

    leader: LeaderRecord | None
    watched: bool = False


# Optional, beside the protocol: ``answers_at_once(call) -> bool``, asked just before each acquire,
# renew or release ("acquire", "renew", "release"). True is the backend's promise that this call,
# made now, does no I/O and waits for nothing (it reads state the backend keeps up to date by
# itself): the loop then makes it on the event loop, not through its storage thread, which saves
# two thread hops per call (Raft: acquire and renew read the local peer's latest snapshot).
AT_ONCE = "answers_at_once"


# How often the loop asks again a backend that answered Held(watched=True) and has not woken it
# since: a safety net, not the way a change is seen (seconds; never less than the acquire interval).
WATCHED_RECHECK = 30.0


@runtime_checkable
class ElectionBackend(Protocol):
    """A lock with a lease, a term and a readable holder.

    The lease contract: ``sent_at + duration`` (on this process's monotonic clock) is a moment
    before which no other instance can be granted leadership. The loop acts only until that
    moment minus its safety margin.

    Errors are the ones in errors.py: ``LeaseLostError`` when the lease is definitely gone,
    ``StorageUnavailableError`` for anything that may heal, ``StorageRejectedError`` for good.
    """

    name: str

    def default_timing(self) -> ElectionTiming:
        """The loop's timing that this backend's guarantee implies: what DistributedMutex uses when
        it is given none (the blob lease: its lease duration; ZooKeeper: its session timeout;
        Raft: its election timeout)."""
        ...

    def acquire(self, identity: Identity, now: float) -> Lease | Held:
        """Try once to take the lease. On success the term is already incremented and recorded.

        ``now`` is the caller's monotonic time at the moment the request is sent.
        """
        ...

    def renew(self, lease: Lease, now: float) -> Lease:
        """Extend the lease; returns it with the new ``sent_at``."""
        ...

    def advance_term(self, lease: Lease, identity: Identity, at_least: int) -> Lease:
        """Raise the term of the lease we hold to at least ``at_least`` (only the holder can).

        For a data store that has seen a newer term than the lease's own (its record was reset).
        """
        ...

    def release(self, lease: Lease) -> None:
        """Give the lease up so that another instance can take it at once."""
        ...

    def read_leader(self) -> LeaderRecord | None:
        """Who holds (or last held) the lease and in which term; None if nobody ever did."""
        ...

    def watch(self, wake: Callable[[], None]) -> None:
        """Call ``wake()`` (from any thread, cheaply) whenever who leads may have changed.

        The loop then tries to acquire, or renews, at once instead of at its next interval: what
        lets a backend that is told of changes (ZooKeeper watches, Raft messages) fail over in
        well under a polling interval. A backend that can only poll (the blob lease) never calls it.
        """
        ...

    def close(self) -> None:
        """Let go of connections and threads. Does not release a held lease: release() does."""
        ...


def utc_now() -> datetime:
    """The wall clock, read through time.time() everywhere in this package (one seam to shift it
    in tests). Deadlines never use it: they run on time.monotonic()."""
    return datetime.fromtimestamp(time.time(), timezone.utc)
