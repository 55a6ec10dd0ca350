"""Redis as an election backend: a lease on one key of one primary, taken, extended and deleted
only by server-side scripts that compare the holder and the term first (scripts.py).

The lease: the acquire script sets the key with ``PX lease`` on the server's clock, after the
request was sent at ``now``; so no other contender can take it before ``now + lease`` (this
process's monotonic clock, the server's expiry running at about the same rate: the safety margin
covers the difference). The loop acts until ``sent_at + lease - margin`` of its last renewal that
was answered, as with every backend.

What one Redis primary can promise, and what it cannot (docs/backends.md says it at length): while
the primary keeps its data, one holder at a time and strictly growing terms. A primary that loses
its data (a restart without persistence, FLUSHALL, a failover to a replica that had not yet
received the last writes) forgets the key *and* the counter: another contender may then take the
lease while the old holder is still acting, and terms start again from 1. Two cheap defences here:

* every backend object remembers the highest term it has seen (its own leases and the holders it
  was told of) and passes it to acquire, which continues the counter above it: a term seen by any
  surviving contender is never given again;
* when that happens (the server's counter was below a term we had seen: it lost its data), the
  new holder waits one lease before acting, until the previous holder has surely stopped.

A contender that has seen nothing (started after the loss) cannot know; then only the fenced
store's check (DistributedMutex.fencing: the store refuses a term at or below one it has seen)
keeps the data safe, and the new leader moves its term past the store's (advance_term).
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, TypeVar

from redis import Redis
from redis.backoff import NoBackoff
from redis.exceptions import RedisError
from redis.retry import Retry

from DistributedMutex.backend import MAX_TERM, Held, Identity, LeaderRecord, Lease, utc_now
from DistributedMutex.backends.redis import scripts
from DistributedMutex.backends.redis.arguments import (
    DEFAULT_KEY_PREFIX,
    DEFAULT_LEASE_DURATION,
    check_call_timeout,
    check_key_prefix,
    parse_lease_duration,
    parse_redis_url,
    redis_timing,
)
from DistributedMutex.backends.redis.failures import translate
from DistributedMutex.backends.redis.listener import ChangeListener
from DistributedMutex.errors import ConfigurationError, LeaseLostError, StorageUnavailableError
from DistributedMutex.timing import ElectionTiming

__all__ = ["RedisLeaseBackend"]

log = logging.getLogger(__name__)
T = TypeVar("T")
EXPIRY_SLACK = 0.005  # seconds after the holder's key's PTTL that a contender looks again


class RedisLeaseBackend:
    """Leader election on one key of a Redis primary (6.0 or later), with a term counter.

    ``url``: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for TLS, or
    ``unix:///path.sock?db=N``. ``key_prefix``: the election's keys and channel start with it (one
    election per prefix). ``lease_duration``: seconds, 2 to 60 (the loop's timing follows from it).
    ``call_timeout``: each call's socket timeouts (default: three quarters of the renew interval).
    ``names``: what the caller calls these arguments in its own settings, for messages.
    """

    name = "redis"

    def __init__(self, url: str, key_prefix: str = DEFAULT_KEY_PREFIX, *,
                 lease_duration: float = DEFAULT_LEASE_DURATION, call_timeout: float | None = None,
                 names: Mapping[str, str] | None = None) -> None:
        self._names = dict(names or {})
        address = parse_redis_url(self._name("url"), url)
        self._masked_url = address.masked
        self._secrets = tuple(s for s in (address.password,) if s)
        self._prefix = check_key_prefix(self._name("key_prefix"), key_prefix)
        self._lease_ms = round(1000 * parse_lease_duration(self._name("lease_duration"), lease_duration))
        self._lease_duration = self._lease_ms / 1000
        self._call_timeout = check_call_timeout(self._name("call_timeout"), call_timeout, self._lease_duration)
        self._timing = redis_timing(self._lease_duration)
        # A random id per backend object: the lease's value is <owner>:<term>, and the connections
        # are named after it, so that an operator (or a test) can find this contender's in CLIENT LIST.
        self.owner = uuid.uuid4().hex
        try:
            self._client: Redis = Redis.from_url(
                address.url, socket_timeout=self._call_timeout, socket_connect_timeout=self._call_timeout,
                # No retries inside redis-py: a call is bounded by its timeouts, and the election
                # loop retries by itself (a retried acquire could run twice).
                retry=Retry(NoBackoff(), 0), health_check_interval=10, decode_responses=True,
                client_name=f"distributed-mutex:{self.owner}")
        except (ValueError, TypeError) as exc:  # an option redis-py refuses (its text may quote the URL)
            raise ConfigurationError(self._name("url"), f"{address.masked!r}: redis-py refuses it "
                                                        f"({type(exc).__name__})") from None
        # Hash-tagged: every key of the election in one slot (see scripts.py for what each holds).
        tag = "{" + self._prefix + "}"
        self._lease_key, self._term_key, self._leader_key = f"{tag}:lease", f"{tag}:term", f"{tag}:leader"
        self.channel = f"{tag}:changes"
        self._acquire = self._client.register_script(scripts.ACQUIRE)
        self._renew = self._client.register_script(scripts.RENEW)
        self._release = self._client.register_script(scripts.RELEASE)
        self._advance = self._client.register_script(scripts.ADVANCE_TERM)
        self._seen_term = 0  # the highest term this object has been told of (see the module's docstring)
        self._listener: ChangeListener | None = None
        self._lock = threading.Lock()

    # -- the ElectionBackend interface -------------------------------------------------------

    @property
    def lease_basis(self) -> str:
        """Where the lease's length comes from, for the message refusing a longer timing."""
        return f"lease_duration {self._lease_duration:g} s"

    @property
    def keys(self) -> tuple[str, str, str]:
        """The lease, the term counter and the leader record: what an operator may inspect."""
        return self._lease_key, self._term_key, self._leader_key

    def default_timing(self) -> ElectionTiming:
        """See arguments.redis_timing: 5/1/1 s with a 1 s safety margin for the default 5 s lease."""
        return self._timing

    def acquire(self, identity: Identity, now: float) -> Lease | Held:
        answer = self._call(lambda: self._acquire(
            keys=[self._lease_key, self._term_key, self._leader_key],
            args=[self.owner, self._lease_ms, self._seen_term, identity.instance_id, identity.host, identity.pid,
                  utc_now().isoformat(timespec="milliseconds"), self.channel]), "acquire the lease")
        answered = time.monotonic()
        if int(answer[0]) == 0:
            pttl, record = int(answer[1]), _leader_record(answer[2], "leased")
            self._saw(record.term if record else 0)
            if pttl > 0 and self._listener is not None:
                # Just after the holder's key expires: PTTL is cut down to the millisecond and the
                # server compares whole milliseconds, so a wake-up at PTTL itself could find the
                # key still there (an extra round trip, once in a CI run).
                self._listener.wake_after(pttl / 1000 + EXPIRY_SLACK)
            return Held(record)
        term, lost = int(answer[1]), int(answer[2])
        self._saw(term)
        predecessor_until = float("-inf")
        if lost:
            # The server's counter was below a term we had seen: it lost its data, and the holder of
            # that term may still be acting, until at most one lease after we heard from the server.
            predecessor_until = answered + self._lease_duration
            log.warning("Redis at %s had forgotten the election (its term counter was below term %d, seen before):"
                        " it lost its data; term %d follows the highest seen", self._masked_url, term - 1, term)
        return Lease(term=term, token=f"{self.owner}:{term}", sent_at=now, duration=self._lease_duration,
                     predecessor_until=predecessor_until)

    def renew(self, lease: Lease, now: float) -> Lease:
        extended = self._call(lambda: self._renew(keys=[self._lease_key], args=[lease.token, self._lease_ms]),
                              "renew the lease")
        if int(extended) != 1:
            raise LeaseLostError(f"the lease key {self._lease_key} no longer holds our term {lease.term}: "
                                 "it expired (and may have been taken), or the server lost it")
        return Lease(term=lease.term, token=lease.token, sent_at=now, duration=lease.duration)

    def advance_term(self, lease: Lease, identity: Identity, at_least: int) -> Lease:
        if isinstance(at_least, bool) or not isinstance(at_least, int) or not 0 <= at_least <= MAX_TERM:
            raise ConfigurationError("at_least", f"must be a whole number from 0 to {MAX_TERM}, got {at_least!r}")
        answer = self._call(lambda: self._advance(
            keys=[self._lease_key, self._term_key, self._leader_key],
            args=[lease.token, at_least, self.owner, self.channel]), "advance the term")
        if int(answer[0]) != 1:
            raise LeaseLostError(f"the lease key {self._lease_key} no longer holds our term {lease.term}")
        term = int(answer[1])
        self._saw(term)
        return Lease(term=term, token=str(answer[2]), sent_at=lease.sent_at, duration=lease.duration,
                     predecessor_until=lease.predecessor_until)

    def release(self, lease: Lease) -> None:
        released = self._call(lambda: self._release(keys=[self._lease_key], args=[lease.token, self.channel]),
                              "release the lease")
        if int(released) != 1:
            log.debug("the lease was no longer ours to release (term %d)", lease.term)

    def read_leader(self) -> LeaderRecord | None:
        def read() -> list[Any]:
            with self._client.pipeline(transaction=True) as pipe:  # one snapshot, one round trip
                pipe.get(self._lease_key)
                pipe.hgetall(self._leader_key)
                return pipe.execute()

        holder, fields = self._call(read, "read the leader")
        if not fields:
            return None
        record = _leader_record(fields, "leased" if holder is not None and holder == fields.get("holder")
                                else "available")
        if record is not None:
            self._saw(record.term)
        return record

    def watch(self, wake: Callable[[], None]) -> None:
        """Subscribe (on a connection of its own) to the election's channel, and time the holder's
        expiry: both call ``wake()`` (listener.py)."""
        with self._lock:
            if self._listener is None:
                self._listener = ChangeListener(self._client, self.channel, wake)

    def close(self) -> None:
        """Stop the subscriber and close the connections; does not release a held lease."""
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listener.close(timeout=1.0)
        try:
            self._client.close()
        except (RedisError, OSError):
            pass

    # -- helpers -----------------------------------------------------------------------------

    @property
    def listener(self) -> ChangeListener | None:
        return self._listener

    def _saw(self, term: int) -> None:
        if term > self._seen_term:
            self._seen_term = term

    def _name(self, argument: str) -> str:
        return self._names.get(argument, argument)

    def _call(self, operation: Callable[[], T], action: str) -> T:
        try:
            return operation()
        except (RedisError, OSError) as exc:
            raise translate(exc, action, self._names, self._masked_url, self._secrets) from None


def _leader_record(fields: Any, state: str) -> LeaderRecord | None:
    """The leader hash (a dict from HGETALL, or the flat list a script returns) as a LeaderRecord."""
    if isinstance(fields, list):
        fields = dict(zip(fields[::2], fields[1::2], strict=True))
    if not fields:
        return None
    try:
        term = int(fields.get("term", 0))
        pid = int(fields["pid"]) if fields.get("pid") else None
        acquired_at = datetime.fromisoformat(fields["acquired_at"]) if fields.get("acquired_at") else None
    except ValueError:
        raise StorageUnavailableError("the leader record in Redis is malformed: some other program wrote it") from None
    return LeaderRecord(instance_id=fields.get("instance_id"), term=term, host=fields.get("host"), pid=pid,
                        acquired_at=acquired_at, lease_state=state)
