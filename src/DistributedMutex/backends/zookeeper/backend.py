"""ZooKeeper as an election backend: the ephemeral-sequential-znode recipe.

Every contender creates an EPHEMERAL_SEQUENTIAL znode under the election path (``/election`` by
default), its identity as JSON in the data. The lowest sequence number leads. Every other contender
watches only the znode just below its own (no herd effect: one deletion wakes one contender); when
that znode goes, it looks again: it leads if it is now the lowest, otherwise it watches the next
lower one. ZooKeeper deletes an ephemeral znode when its session ends: at once on a clean close, one
session timeout after a crash or a partition.

    /election/<owner>-n_0000000007   ephemeral, {"instance_id", "host", "pid"} (+ "acquired_at" once
                                     it leads); <owner> is a random id per backend object
    /election-term                   persistent, an integer (absent: 0): the term base

The term of a leadership is ``base + sequence + 1``: a later leader always has a higher sequence
number (it joined after the one before it, or it was waiting behind it), and ``advance_term``
raises the base, so terms only grow. The base is written only in a transaction that also checks
that the writer's znode exists, so only a live contender can move it, and only the leader asks.

The lease: a request sent at ``now`` and answered proves the session was alive at the server after
``now``, and the server keeps a session for its timeout after it last heard from it (rounded *up* to
a tick). So nobody else can lead before ``now + session timeout``: that is the Lease's ``sent_at``
and ``duration``, with the timeout the server granted (it clamps the one asked for to [2, 20] x its
tickTime), not the one asked for; one so short that the loop's timing (derived from the asked one)
could not renew in time is refused. The request must be a write: in an ensemble only the ZooKeeper
leader expires sessions, and a follower cut off from it answers reads (and pings) from its own copy
until it gives up on the leader (syncLimit x tickTime, 10 s by default, longer than a session),
while the leader may already have expired ours. A write (acquire's and renew's transactions) goes to
the leader, which checks the session before a quorum commits it.

Kazoo's connection states drive the loop through ``watch(wake)``: SUSPENDED wakes it so that a
leader's renewal fails at once (the session may be expiring: stop acting now), LOST means our
znode is gone (the next acquire joins again with a new one: a new, higher term), CONNECTED wakes it
to look again. Every call is bounded: kazoo's own calls would wait for a reconnection forever.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    AuthFailedError,
    BadArgumentsError,
    BadVersionError,
    InvalidACLError,
    KazooException,
    NoAuthError,
    NoChildrenForEphemeralsError,
    NodeExistsError,
    NoNodeError,
    RolledBackError,
    SessionExpiredError,
    SessionMovedError,
    UnimplementedError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.interfaces import IAsyncResult
from kazoo.protocol.states import EventType, WatchedEvent
from kazoo.retry import KazooRetry

from DistributedMutex.backend import Held, Identity, LeaderRecord, Lease, utc_now
from DistributedMutex.backends.zookeeper.arguments import (
    parse_session_timeout,
    parse_znode_path,
    parse_zookeeper_hosts,
    zookeeper_timing,
)
from DistributedMutex.errors import BackendError, LeaseLostError, StorageRejectedError, StorageUnavailableError
from DistributedMutex.timing import ElectionTiming

log = logging.getLogger(__name__)

# Our znodes: "<owner>-n_" plus the 10 digits ZooKeeper appends. The owner part lets a backend find
# a znode whose create it sent but whose answer it never got (the connection dropped in between).
_MEMBER = re.compile(r"^(?P<owner>[0-9a-f]{32})-n_(?P<seq>\d{10})$")
# How often one call re-reads the line when znodes come and go under it before giving up (retried).
_ROUNDS = 5
# Errors that retrying cannot fix: the ACL refuses us, or the path cannot hold our znodes.
_REFUSED = (NoAuthError, AuthFailedError)
_UNUSABLE = (NoChildrenForEphemeralsError, BadArgumentsError, InvalidACLError, UnimplementedError)
_STATES = {KazooState.SUSPENDED: "suspended (reconnecting)", KazooState.LOST: "down (connecting)"}


@dataclass(frozen=True)
class _Contender:
    name: str
    owner: str
    seq: int


class ZooKeeperBackend:
    """Leader election on ephemeral sequential znodes under ``path`` (created if missing)."""

    name = "zookeeper"

    def __init__(self, hosts: str, path: str = "/election", session_timeout: float = 5.0, *,
                 call_timeout: float | None = None) -> None:
        """``hosts``: ``host:port[,host:port...]``; ``path``: the election's znode.
        ``call_timeout``: the bound on each call and on connecting (default: the smaller of 3 s and
        half the session timeout)."""
        # The same rules as the settings (config.py), for callers that build a backend themselves.
        self._hosts = parse_zookeeper_hosts("ZOOKEEPER_HOSTS", hosts)
        self._path = parse_znode_path("ZOOKEEPER_PATH", path)
        self._term_path = self._path + "-term"
        self._asked = parse_session_timeout("ZOOKEEPER_SESSION_TIMEOUT", session_timeout)
        self._timing = zookeeper_timing(self._asked)  # the loop's, from the timeout asked for
        self._call_timeout = call_timeout if call_timeout is not None else min(3.0, self._asked / 2)
        self._owner = uuid.uuid4().hex
        self._granted_ms: int | None = None  # the session timeout the server granted, once connected
        self._said_granted: int | None = None
        # Serialises our calls (the loop may abandon one that then finishes late); kazoo's callbacks
        # never take it (they must not block), they only write single attributes.
        self._lock = threading.Lock()
        self._wake: Callable[[], None] | None = None
        self._started = False
        self._closing = False
        # Set while the loop waits for a (re)connection it was told about: the next CONNECTED
        # wakes it. Not on a first connection made within a call, which goes on by itself.
        self._wake_on_connect = False
        # Our znode's name and the session epoch it belongs to: every LOST starts a new epoch, in
        # which the old znode no longer exists (the server deleted it when the session ended).
        self._epoch = 0
        self._member: tuple[int, str] | None = None
        self._recorded: str | None = None  # the member whose data says it leads (acquired_at)
        self._watching: str | None = None  # the predecessor our watch is on, while it is armed
        self._kazoo_log = _KazooLog(self._granted)
        self._client = KazooClient(
            hosts=self._hosts, timeout=self._asked, logger=self._kazoo_log,
            # Reconnect forever, at most a second apart: a session survives only if we reconnect
            # within its timeout (kazoo's default backoff grows to an hour).
            connection_retry=KazooRetry(max_tries=-1, delay=0.1, backoff=2, max_delay=1.0),
        )
        self._client.add_listener(self._on_state)

    # -- the ElectionBackend interface -------------------------------------------------------

    def default_timing(self) -> ElectionTiming:
        """From the session timeout asked for (see arguments.zookeeper_timing)."""
        return self._timing

    def watch(self, wake: Callable[[], None]) -> None:
        """Call ``wake()`` (from kazoo's threads) whenever who leads may have changed."""
        self._wake = wake

    def acquire(self, identity: Identity, now: float) -> Lease | Held:
        with self._serial("join the election"):
            client = self._ready()
            self._check_granted()
            for _ in range(_ROUNDS):
                line, base = self._read_line(client)
                member = self._adopt(client, line)
                if member is None:
                    self._create(client, identity)
                    continue
                position = line.index(member)
                if position == 0:
                    lease = self._lead(identity, member, base, now)
                    if lease is None:
                        continue
                    return lease
                held = self._follow(client, line[0], line[position - 1], base[0])
                if held is not None:
                    return held
            raise StorageUnavailableError(f"the contenders under {self._path} kept changing while we "
                                          f"read them {_ROUNDS} times; trying again")

    def renew(self, lease: Lease, now: float) -> Lease:
        # No waiting for the lock or the server first: a suspended connection means the session
        # may be expiring right now, and a leader must stop acting at once.
        self._check_connected(LeaseLostError)
        with self._serial("check our znode"):
            self._check_connected(LeaseLostError)
            if self._current_member() != lease.token:
                raise LeaseLostError(f"our znode {lease.token} went with the ZooKeeper session")
            # A write, never a read. In an ensemble a follower answers reads and pings from its own
            # copy of the tree for up to syncLimit x tickTime after it lost touch with the ZooKeeper
            # leader, and only that leader expires sessions: it may have expired ours, deleted our
            # znode and let the next contender lead while our follower still shows them. A
            # transaction goes to the leader, which checks that our session is live (and our znode
            # still there) before a quorum commits it; the check itself changes nothing.
            transaction = self._client.transaction()
            transaction.check(self._child(lease.token), -1)
            try:
                results = self._wait(transaction.commit_async(), "check our znode")
            except KazooException as exc:  # the connection or the session went mid-call
                raise LeaseLostError(f"ZooKeeper connection broke while checking our znode: "
                                     f"{type(exc).__name__}") from None
            outcome = results[0] if results else None
            if isinstance(outcome, (NoNodeError, SessionExpiredError, SessionMovedError)):
                self._forget(lease.token)
                raise LeaseLostError(f"our znode {lease.token} is gone from {self._path} "
                                     f"({type(outcome).__name__})")
            if isinstance(outcome, BaseException):
                raise self._translate(outcome, "check our znode")
            if outcome is not True:  # only a check that passed proves the session: anything else is no lease
                raise StorageUnavailableError(f"ZooKeeper gave an unexpected answer to our check: {results!r}")
            return Lease(term=lease.term, token=lease.token, sent_at=now, duration=self._duration())

    def advance_term(self, lease: Lease, identity: Identity, at_least: int) -> Lease:
        with self._serial("advance the term"):
            self._check_connected(LeaseLostError)
            if self._current_member() != lease.token:
                raise LeaseLostError(f"our znode {lease.token} went with the ZooKeeper session")
            term = self._raise_term(lease.token, at_least)
            if term > lease.term:
                log.info("term base at %s raised: our term is now %d", self._term_path, term)
            return replace(lease, term=max(lease.term, term))

    def release(self, lease: Lease) -> None:
        with self._serial("delete our znode"):
            if self._current_member() != lease.token:
                return  # gone with the session already
            self._check_connected(StorageUnavailableError)
            try:
                self._wait(self._client.delete_async(self._child(lease.token)), "delete our znode")
            except NoNodeError:
                pass
            self._forget(lease.token)
            log.debug("deleted our znode %s: the next contender leads now", lease.token)

    def read_leader(self) -> LeaderRecord | None:
        with self._serial("read the leader"):
            client = self._ready()
            for _ in range(_ROUNDS):
                listing = client.get_children_async(self._path, include_data=True)
                base_read = client.get_async(self._term_path)
                try:
                    names, parent = self._wait(listing, "list the contenders")
                except NoNodeError:
                    names, parent = [], None
                base, version = self._base_from(base_read)
                line = _line(names)
                if not line:
                    # Nobody contends. Somebody did if the path has had children or a base exists;
                    # the last leader's own term went with its znode, so only the base is known.
                    if version is None and (parent is None or parent.cversion == 0):
                        return None
                    return LeaderRecord(None, base, lease_state="available")
                try:
                    data, _ = self._wait(client.get_async(self._child(line[0].name)), "read the leader's znode")
                except NoNodeError:
                    continue  # it just left: look again
                return _record(line[0], data, base)
            raise StorageUnavailableError(f"the contenders under {self._path} kept changing; try again")

    def close(self) -> None:
        """End the session: ZooKeeper deletes our znode at once, and the next contender leads.

        Bounded by the call timeout: with the server out of reach kazoo's stop can take a session
        timeout, and the session then expires by itself anyway."""
        if not self._started:
            return
        self._started = False
        self._member = None
        stopping = threading.Thread(target=self._stop_client, name="zookeeper-close", daemon=True)
        stopping.start()
        stopping.join(self._call_timeout)
        if stopping.is_alive():
            log.warning("closing the ZooKeeper session did not finish within %g s; it expires by itself",
                        self._call_timeout)

    def _stop_client(self) -> None:
        self._closing = True
        try:
            self._client.stop()
            self._client.close()
        except Exception as exc:  # noqa: BLE001 - closing is best effort; the session expires anyway
            log.warning("closing the ZooKeeper client failed (the session expires by itself): %s", exc)
        finally:
            self._closing = False

    # -- what kazoo tells us -----------------------------------------------------------------

    @property
    def session_id(self) -> int | None:
        """The current ZooKeeper session's id (as ``wchc``/``cons`` print it), None if none."""
        client_id = self._client.client_id
        return client_id[0] if client_id else None

    @property
    def session_timeout(self) -> float | None:
        """The session timeout the server granted, in seconds; None before the first connection."""
        return None if self._granted_ms is None else self._granted_ms / 1000

    def _granted(self, milliseconds: int) -> None:
        self._granted_ms = int(milliseconds)

    def _on_state(self, state: str) -> None:
        """Kazoo's connection listener. Must not block: it only writes attributes and logs."""
        if state == KazooState.SUSPENDED:
            self._watching = None
            self._wake_on_connect = True
            log.warning("ZooKeeper connection suspended: leadership stops now; the session (and our znode) "
                        "survives if we reconnect within %g s", self.session_timeout or self._asked)
        elif state == KazooState.LOST:
            self._epoch += 1
            self._watching = None
            self._wake_on_connect = True
            if self._closing:
                log.info("ZooKeeper session closed")
            else:
                log.warning("ZooKeeper session lost (expired or closed by the server): our znode is gone; "
                            "joining again with a new one")
        else:
            self._kazoo_log.last_problem = None
            granted = self._granted_ms
            log.info("connected to ZooKeeper at %s (session 0x%x, timeout %g s)", self._hosts,
                     self.session_id or 0, (granted or 0) / 1000)
            if granted is not None and granted != self._said_granted:
                self._said_granted = granted
                if granted != round(self._asked * 1000):
                    log.warning("ZooKeeper granted a session timeout of %g s, not the %g s asked for "
                                "(ZOOKEEPER_SESSION_TIMEOUT; the server allows 2 to 20 ticks): leases last "
                                "%g s", granted / 1000, self._asked, granted / 1000)
            if not self._wake_on_connect:
                return
            self._wake_on_connect = False
        if not self._closing:
            self._wake_loop()

    def _on_watch(self, event: WatchedEvent) -> None:
        """The watch on our predecessor. Must not block either."""
        if event.type == EventType.CHANGED and event.path:
            # The predecessor wrote its data (it became the leader): it is still there, so there is
            # nothing to re-check; re-arm the one-shot watch without a round trip of the loop's.
            self._client.get_async(event.path, watch=self._on_watch).rawlink(self._rearmed)
            return
        self._watching = None
        if event.type == EventType.DELETED:
            log.debug("the znode below ours went (%s): looking again", event.path)
            self._wake_loop()
        # NONE: the connection changed; _on_state has seen it and wakes the loop.

    def _rearmed(self, result: IAsyncResult) -> None:
        if result.exception is not None:
            self._watching = None
            self._wake_loop()

    def _wake_loop(self) -> None:
        wake = self._wake
        if wake is None:
            return
        try:
            wake()
        except Exception:  # a kazoo thread must survive whatever the callback does
            log.exception("waking the election loop failed")

    # -- the recipe --------------------------------------------------------------------------

    def _read_line(self, client: KazooClient) -> tuple[list[_Contender], tuple[int, int | None]]:
        """The contenders, lowest first, and the term base with its version; two reads in one
        round trip."""
        listing = client.get_children_async(self._path)
        base_read = client.get_async(self._term_path)
        try:
            names = self._wait(listing, "list the contenders")
        except NoNodeError:
            names = []
        return _line(names), self._base_from(base_read)

    def _adopt(self, client: KazooClient, line: list[_Contender]) -> _Contender | None:
        """Our znode in the line: the one we know, or one whose create we never heard back from."""
        mine = [c for c in line if c.owner == self._owner]
        known = self._current_member()
        if not mine:
            if known is not None:
                log.info("our znode %s is gone from %s; joining again", known, self._path)
                self._forget(known)
            return None
        keep, extra = mine[0], mine[1:]
        if keep.name != known:
            if known is not None:
                log.info("our znode %s is gone; %s is ours too, keeping it", known, keep.name)
            self._member = (self._epoch, keep.name)
        for duplicate in extra:
            # A create retried after its first answer was lost: one znode per contender, or we
            # would wait behind ourselves.
            log.info("deleting a second znode of ours, %s", duplicate.name)
            client.delete_async(self._child(duplicate.name))
        return keep

    def _create(self, client: KazooClient, identity: Identity) -> None:
        data = _encode({"instance_id": identity.instance_id, "host": identity.host, "pid": identity.pid})
        epoch = self._epoch
        created = self._wait(client.create_async(self._child(f"{self._owner}-n_"), data, ephemeral=True,
                                                 sequence=True, makepath=True), "create our znode")
        name = created.rsplit("/", 1)[-1]
        if epoch == self._epoch:
            self._member = (epoch, name)
        log.info("joined the election under %s as %s", self._path, name)

    def _lead(self, identity: Identity, member: _Contender, base: tuple[int, int | None],
              now: float) -> Lease | None:
        """We are the lowest: we lead. None if our znode vanished meanwhile."""
        self._watching = None
        term = base[0] + member.seq + 1
        # We led with this very znode before and stepped down without losing it (the connection
        # was suspended, and the session survived): a new leadership, so a new term, as after any
        # other change of leader.
        at_least = term + 1 if self._recorded == member.name else term
        data = _encode({"instance_id": identity.instance_id, "host": identity.host, "pid": identity.pid,
                        "acquired_at": utc_now().isoformat()})  # says when, for read_leader
        try:
            term = self._raise_term(member.name, at_least, data=data, base=base)
        except LeaseLostError:
            return None
        self._recorded = member.name
        return Lease(term=term, token=member.name, sent_at=now, duration=self._duration())

    def _follow(self, client: KazooClient, leader: _Contender, below: _Contender, base: int) -> Held | None:
        """Watch the znode just below ours and read the leader's; None if either vanished."""
        arm = self._watching != below.name
        if arm:
            # Marked before the request: a watch event or a suspension from here on clears it,
            # and a stale mark would leave us without a watch until the next poll.
            self._watching = below.name
        watched = client.get_async(self._child(below.name), watch=self._on_watch) if arm else None
        leader_read = watched if watched is not None and below == leader else \
            client.get_async(self._child(leader.name))
        try:
            if watched is not None:
                self._wait(watched, "watch the znode below ours")
            data, _ = self._wait(leader_read, "read the leader's znode")
        except NoNodeError:
            self._watching = None
            return None  # it went between our listing and now: look again
        except BaseException:
            self._watching = None
            raise
        return Held(_record(leader, data, base))

    def _raise_term(self, member: str, at_least: int, *, data: bytes | None = None,
                    base: tuple[int, int | None] | None = None) -> int:
        """Make our znode's term at least ``at_least`` (and write ``data`` into our znode, if given)
        in one transaction that only succeeds while our znode exists: only a live contender moves
        the base, and only the leader asks. The base is compare-and-set over the version read, so
        terms only grow. Returns our term; LeaseLostError if our znode is gone."""
        seq = _parse(member).seq
        for _ in range(_ROUNDS):
            value, version = base if base is not None else self._base_from(self._client.get_async(self._term_path))
            base = None  # read afresh if this round loses a race
            if value + seq + 1 >= at_least and data is None:
                return value + seq + 1
            raised = max(value, at_least - seq - 1)
            transaction = self._client.transaction()
            if data is None:
                transaction.check(self._child(member), -1)
            else:
                transaction.set_data(self._child(member), data)
            if raised != value and version is None:
                transaction.create(self._term_path, str(raised).encode())
            elif raised != value:
                transaction.set_data(self._term_path, str(raised).encode(), version)
            results = self._wait(transaction.commit_async(), "write the term")
            failures = [r for r in results if isinstance(r, Exception) and not isinstance(r, RolledBackError)]
            if not failures:
                return raised + seq + 1
            if isinstance(results[0], NoNodeError):
                self._forget(member)
                raise LeaseLostError(f"our znode {member} is gone from {self._path}")
            if not isinstance(failures[0], (BadVersionError, NodeExistsError)):
                raise self._translate(failures[0], "write the term")
            # The base moved between our read and our write: read it again.
        raise StorageUnavailableError(f"{self._term_path} kept changing; could not write the term")

    def _base_from(self, read: IAsyncResult) -> tuple[int, int | None]:
        """The term base and its version (None: the node does not exist, the base is 0)."""
        try:
            data, stat = self._wait(read, "read the term base")
        except NoNodeError:
            return 0, None
        try:
            return int(data.decode("ascii").strip()), stat.version
        except (UnicodeDecodeError, ValueError):
            raise StorageRejectedError(f"{self._term_path} holds {data[:40]!r}, not an integer: it is this "
                                       "election's term base; delete it or write a number") from None

    # -- plumbing ----------------------------------------------------------------------------

    def _ready(self) -> KazooClient:
        """The client, connected: started on first use, bounded by the call timeout."""
        if not self._started:
            self._started = True
            # Kazoo's own start() stops the client again when the wait times out, which can block
            # for a session timeout; started in the background instead, it keeps trying and wakes
            # the loop when it gets through.
            self._client.start_async().wait(self._call_timeout)
            if not self._client.connected:
                self._wake_on_connect = True
                raise StorageUnavailableError(f"cannot connect to ZooKeeper at {self._hosts} (ZOOKEEPER_HOSTS) "
                                              f"within {self._call_timeout:g} s; still trying{self._last_problem()}")
        self._check_connected(StorageUnavailableError)
        return self._client

    def _check_connected(self, error: type[BackendError]) -> None:
        state = self._client.state
        if not self._started or state != KazooState.CONNECTED:
            shown = "closed" if not self._started else _STATES.get(state, state.lower())
            raise error(f"not connected to ZooKeeper at {self._hosts} (ZOOKEEPER_HOSTS): connection "
                        f"{shown}{self._last_problem()}")

    def _last_problem(self) -> str:
        problem = self._kazoo_log.last_problem
        return f" (last: {problem})" if problem else ""

    def _duration(self) -> float:
        if self._granted_ms is None:
            # Never seen: kazoo no longer logs it as it did. Without it the lease has no safe length.
            raise StorageRejectedError("cannot tell which session timeout ZooKeeper granted (a kazoo "
                                       "version other than the one in requirements.txt?)")
        return self._granted_ms / 1000

    def _check_granted(self) -> None:
        """Refuse a granted session timeout too short for the loop's timing, which comes from the
        one asked for (ZooKeeperSettings.timing): the server clamps what it grants (by default to
        at most 20 ticks, 40 s), and a leader must be able to renew twice within its acting window."""
        granted = self._duration()
        timing = self._timing
        if granted <= timing.safety_margin + 2 * timing.renew_interval:
            raise StorageRejectedError(
                f"ZooKeeper at {self._hosts} granted a session timeout of {granted:g} s, far less than the "
                f"{self._asked:g} s asked for: a leader could not renew in time; set ZOOKEEPER_SESSION_TIMEOUT "
                f"to at most {granted:g}")

    def _current_member(self) -> str | None:
        member = self._member
        return member[1] if member is not None and member[0] == self._epoch else None

    def _forget(self, name: str) -> None:
        if self._current_member() == name:
            self._member = None

    def _child(self, name: str) -> str:
        return f"{self._path}/{name}"

    def _wait(self, result: IAsyncResult, action: str) -> Any:
        """Kazoo's answer within the call timeout (its own .get() waits for ever while reconnecting)."""
        try:
            return result.get(timeout=self._call_timeout)
        except KazooTimeoutError:
            raise StorageUnavailableError(f"ZooKeeper at {self._hosts} did not answer within "
                                          f"{self._call_timeout:g} s (to {action})") from None

    @contextmanager
    def _serial(self, action: str) -> Iterator[None]:
        if not self._lock.acquire(timeout=self._call_timeout):
            raise StorageUnavailableError(f"an earlier ZooKeeper call is still in flight; cannot {action}")
        try:
            yield
        except (KazooException, KazooTimeoutError) as exc:
            raise self._translate(exc, action) from None
        finally:
            self._lock.release()

    def _translate(self, exc: BaseException, action: str) -> BackendError:
        what = type(exc).__name__
        if isinstance(exc, _REFUSED):
            return StorageRejectedError(f"ZooKeeper refused to let us {action} under {self._path} "
                                        f"(ZOOKEEPER_PATH): {what}: check the path's ACL", code=what)
        if isinstance(exc, _UNUSABLE):
            return StorageRejectedError(f"ZooKeeper cannot {action} under {self._path} (ZOOKEEPER_PATH): {what}",
                                        code=what)
        return StorageUnavailableError(f"ZooKeeper at {self._hosts} (ZOOKEEPER_HOSTS) failed to {action}: {what}",
                                       code=what)


class _KazooLog(logging.LoggerAdapter):
    """Kazoo's logger: reads the granted session timeout off its connection log, keeps its chatter
    at DEBUG (our listener says each state change in one line) but remembers its last complaint
    for our error messages, and drops its BLATHER level (some of those lines carry the session
    password)."""

    def __init__(self, granted: Callable[[int], None]) -> None:
        super().__init__(logging.getLogger("kazoo.client"), {})
        self._granted = granted
        self.last_problem: str | None = None  # e.g. "Connection dropped: socket connection error: ..."

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        # kazoo 2.11 protocol/connection.py: "Session created, session_id: %r session_passwd: %s\n
        # negotiated session timeout: %s ...", logged before the connection is reported CONNECTED.
        if isinstance(msg, str) and msg.startswith("Session created") and len(args) >= 3:
            self._granted(args[2])
        if level < logging.DEBUG:
            return
        if level >= logging.WARNING and msg != "Transition to CONNECTING":
            try:
                text = str(msg) % args if args else str(msg)
            except (TypeError, ValueError):
                text = str(msg)
            self.last_problem = " ".join(text.split())[:200]
        super().log(level if level >= logging.ERROR else logging.DEBUG, msg, *args, **kwargs)


def _parse(name: str) -> _Contender:
    match = _MEMBER.match(name)
    if match is None:
        raise ValueError(name)
    return _Contender(name, match["owner"], int(match["seq"]))


def _line(names: list[str]) -> list[_Contender]:
    """Our kind of znodes, lowest sequence number first (other children are not contenders)."""
    return sorted((_parse(n) for n in names if _MEMBER.match(n)), key=lambda c: c.seq)


def _record(leader: _Contender, data: bytes, base: int) -> LeaderRecord:
    try:
        fields = json.loads(data.decode("utf-8"))
        if not isinstance(fields, dict):
            raise ValueError("not an object")
    except (UnicodeDecodeError, ValueError):
        fields = {}
    acquired_at = None
    if isinstance(fields.get("acquired_at"), str):
        try:
            acquired_at = datetime.fromisoformat(fields["acquired_at"])
        except ValueError:
            pass
    pid = fields.get("pid")
    return LeaderRecord(
        instance_id=str(fields.get("instance_id") or leader.name), term=base + leader.seq + 1,
        host=fields.get("host") if isinstance(fields.get("host"), str) else None,
        pid=pid if isinstance(pid, int) else None, acquired_at=acquired_at, lease_state="leased",
    )


def _encode(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, separators=(",", ":")).encode("utf-8")
