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
the leader, which checks the session before a quorum commits it. That leader does not move the
session's expiry on for a write a follower forwards: the follower's ping relays it (every tickTime /
2), which a lease counted from the write assumes (docs/backends.md, ZooKeeper, says by how much).

The connection (session.py) wakes the loop through ``watch(wake)`` when its state changes; a lost
session means our znode is gone, and the next acquire joins again with a new one: a new, higher term.
The contender next in line keeps a standby lease, to act as soon as the leader's znode goes (standby.py).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import replace

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    KazooException,
    NoNodeError,
    SessionExpiredError,
    SessionMovedError,
)
from kazoo.interfaces import IAsyncResult
from kazoo.protocol.states import Callback, EventType, WatchedEvent

from DistributedMutex.backend import Held, Identity, LeaderRecord, Lease
from DistributedMutex.backends.zookeeper.arguments import (
    DEFAULT_PATH,
    DEFAULT_SESSION_TIMEOUT,
    check_call_timeout,
    parse_session_timeout,
    parse_znode_path,
    parse_zookeeper_hosts,
    zookeeper_timing,
)
from DistributedMutex.backends.zookeeper.session import ZooKeeperSession
from DistributedMutex.backends.zookeeper.standby import NextInLine, Standby, Takeover, takeover_failed
from DistributedMutex.backends.zookeeper.terms import base_from, raise_term, read_leader, read_line, send_term
from DistributedMutex.backends.zookeeper.znodes import Contender, encode, leader_data, parse, record
from DistributedMutex.errors import LeaseLostError, StorageUnavailableError
from DistributedMutex.timing import ElectionTiming

log = logging.getLogger(__name__)

# How often one call re-reads the line when znodes come and go under it before giving up (retried).
_ROUNDS = 5


class ZooKeeperBackend:
    """Leader election on ephemeral sequential znodes under ``path`` (created if missing)."""

    name = "zookeeper"

    def __init__(self, hosts: str, path: str = DEFAULT_PATH, session_timeout: float = DEFAULT_SESSION_TIMEOUT, *,
                 call_timeout: float | None = None, names: Mapping[str, str] | None = None) -> None:
        """``hosts``: ``host:port[,host:port...]``; ``path``: the election's znode;
        ``session_timeout``: seconds, 2 to 40 (the lease: the loop's timing follows from it).
        ``call_timeout``: the bound on each call and on connecting (default: the smaller of 3 s and
        half the session timeout). ``names``: what the caller calls these arguments in its own
        settings, for messages (by default their own names)."""
        given = dict(names or {})

        def named(argument: str) -> str:
            return given.get(argument, argument)

        hosts = parse_zookeeper_hosts(named("hosts"), hosts, path_name=given.get("path", "the path argument"))
        checked_path = parse_znode_path(named("path"), path)
        asked = parse_session_timeout(named("session_timeout"), session_timeout)
        self._path = checked_path
        self._term_path = self._path + "-term"
        self._timing = zookeeper_timing(asked)  # the loop's, from the timeout asked for
        self._session = ZooKeeperSession(hosts, checked_path, asked,
                                         check_call_timeout(named("call_timeout"), call_timeout, asked),
                                         given, changed=self._session_changed)
        self._client: KazooClient = self._session.client
        self._owner = os.urandom(16).hex()  # 32 hex digits, as znodes._MEMBER expects (uuid4 costs an import)
        # Our znode's name and the session epoch it belongs to: every LOST starts a new epoch, in
        # which the old znode no longer exists (the server deleted it when the session ended).
        self._epoch = 0
        self._member: tuple[int, str] | None = None
        self._recorded: str | None = None  # the member whose data says it leads (acquired_at)
        self._watching: str | None = None  # the predecessor our watch is on, while it is armed
        # Set while the znode below ours is the leader's (the lowest; see _follow). When that znode
        # goes, nobody is left below ours (sequence numbers only grow: no znode can join below), so
        # we lead: _heir holds what acquire needs to take over (standby.py).
        self._next_in_line: NextInLine | None = None
        self._heir: Takeover | None = None
        self._identity: Identity | None = None  # the last acquire's: what the takeover writes
        self._standby = Standby(self._client, self._timing, lambda: self._session.granted)
        self._connection = 0  # counts suspensions and losses: a Takeover from before one is not acted on
        self._term_events = 0  # the term base's watch events (the next in line's _follow arms it)
        self._pending: tuple[str, tuple[IAsyncResult, int]] | None = None  # a takeover acted on before its answer

    # -- the ElectionBackend interface -------------------------------------------------------

    @property
    def lease_basis(self) -> str:
        """Where the lease's length comes from, for the message refusing a longer timing."""
        return f"session_timeout {self._session.asked:g} s"

    def default_timing(self) -> ElectionTiming:
        """From the session timeout asked for (see arguments.zookeeper_timing)."""
        return self._timing

    def watch(self, wake: Callable[[], None]) -> None:
        """Call ``wake()`` (from kazoo's threads) whenever who leads may have changed."""
        self._session.wake = wake

    def acquire(self, identity: Identity, now: float) -> Lease | Held:
        with self._session.serial("join the election"):
            client = self._session.ready()
            self._session.check_granted(self._timing)
            self._identity = identity
            heir, self._heir = self._heir, None
            if heir is not None and (heir.epoch, heir.connection) == (self._epoch, self._connection) \
                    and heir.member == self._current_member() and heir.member != self._recorded:
                # The leader just below us went: we lead. With a fresh standby proof, act now on its
                # lease (standby.py; the first renewal checks the takeover's transaction); otherwise
                # wait for that transaction (it fails if our znode or the term base changed: then the
                # recipe below reads the line as usual), its lease counted from when it went.
                if heir.sent is not None and heir.acts_on_proof(self._standby.fresh()):
                    self._recorded, self._pending = heir.member, (heir.member, heir.sent)
                    self._watching = self._next_in_line = None
                    return heir.standby_lease(now, self._session.lease_duration())
                lease = self._lead(identity, parse(heir.member), heir.base, heir.since(now), sent=heir.sent)
                if lease is not None:
                    return lease
            for _ in range(_ROUNDS):
                line, base = read_line(self._session, client, self._path, self._term_path)
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
                held = self._follow(client, member, line[0], line[position - 1], base)
                if held is not None:
                    return held
            raise StorageUnavailableError(f"the contenders under {self._path} kept changing while we "
                                          f"read them {_ROUNDS} times; trying again")

    def renew(self, lease: Lease, now: float) -> Lease:
        # No waiting for the lock or the server first: a suspended connection means the session
        # may be expiring right now, and a leader must stop acting at once.
        self._session.check_connected(LeaseLostError)
        with self._session.serial("check our znode"):
            self._session.check_connected(LeaseLostError)
            if self._current_member() != lease.token:
                raise LeaseLostError(f"our znode {lease.token} went with the ZooKeeper session")
            pending, self._pending = self._pending, None
            if pending and pending[0] == lease.token and (failed := takeover_failed(self._session, pending[1])):
                raise LeaseLostError(f"our takeover with {lease.token} failed: {failed}")  # znode gone, base moved
            # A write, never a read (the module's docstring says why): a transaction goes to the
            # ZooKeeper leader, which checks that our session is live (and our znode still there)
            # before a quorum commits it; the check itself changes nothing.
            transaction = self._client.transaction()
            transaction.check(self._child(lease.token), -1)
            try:
                results = self._session.wait(transaction.commit_async(), "check our znode")
            except KazooException as exc:  # the connection or the session went mid-call
                raise LeaseLostError(f"ZooKeeper connection broke while checking our znode: "
                                     f"{type(exc).__name__}") from None
            outcome = results[0] if results else None
            if isinstance(outcome, (NoNodeError, SessionExpiredError, SessionMovedError)):
                self._forget(lease.token)
                raise LeaseLostError(f"our znode {lease.token} is gone from {self._path} "
                                     f"({type(outcome).__name__})")
            if isinstance(outcome, BaseException):
                raise self._session.translate(outcome, "check our znode")
            if outcome is not True:  # only a check that passed proves the session: anything else is no lease
                raise StorageUnavailableError(f"ZooKeeper gave an unexpected answer to our check: {results!r}")
            return Lease(term=lease.term, token=lease.token, sent_at=now, duration=self._session.lease_duration())

    def advance_term(self, lease: Lease, identity: Identity, at_least: int) -> Lease:
        with self._session.serial("advance the term"):
            self._session.check_connected(LeaseLostError)
            if self._current_member() != lease.token:
                raise LeaseLostError(f"our znode {lease.token} went with the ZooKeeper session")
            term = self._raise_term(lease.token, at_least)
            if term > lease.term:
                log.info("term base at %s raised: our term is now %d", self._term_path, term)
            return replace(lease, term=max(lease.term, term))

    def release(self, lease: Lease) -> None:
        with self._session.serial("delete our znode"):
            if self._current_member() != lease.token:
                return  # gone with the session already
            self._session.check_connected(StorageUnavailableError)
            try:
                self._session.wait(self._client.delete_async(self._child(lease.token)), "delete our znode")
            except NoNodeError:
                pass
            self._forget(lease.token)
            log.debug("deleted our znode %s: the next contender leads now", lease.token)

    def read_leader(self) -> LeaderRecord | None:
        with self._session.serial("read the leader"):
            return read_leader(self._session, self._session.ready(), self._path, self._term_path)

    def close(self) -> None:
        """End the session: ZooKeeper deletes our znode at once, and the next contender leads.
        Bounded by the call timeout."""
        self._member = None
        self._standby.close()
        self._session.close()

    # -- what the session tells us -----------------------------------------------------------

    @property
    def session_id(self) -> int | None:
        """The current ZooKeeper session's id (as ``wchc``/``cons`` print it), None if none."""
        return self._session.session_id

    @property
    def session_timeout(self) -> float | None:
        """The session timeout the server granted, in seconds; None before the first connection."""
        return self._session.granted

    def _session_changed(self, state: str) -> None:
        """From kazoo's thread, before the loop is woken: what a state change does to our znode."""
        if state in (KazooState.SUSPENDED, KazooState.LOST):
            # A takeover told before is not acted on: its proof ages while we reconnect (the recipe
            # reads the line afresh instead).
            self._connection += 1
            self._watching = self._next_in_line = self._heir = None
            self._standby.stop()
        if state == KazooState.LOST:
            self._epoch += 1

    def _on_watch(self, event: WatchedEvent) -> None:
        """The watch on our predecessor. Must not block either."""
        if event.type == EventType.CHANGED and event.path:
            # The predecessor wrote its data: it became the leader. It is still there, so re-arm the
            # one-shot watch here; the loop is woken to read the new leader (ctx.leader).
            path = event.path
            self._client.get_async(path, watch=self._on_watch).rawlink(lambda result: self._rearmed(result, path))
            self._session.wake_loop()
            return
        self._watching = None
        if event.type == EventType.DELETED:
            self._predecessor_gone(event.path)
        # NONE: the connection changed; the session has seen it and wakes the loop.

    def _rearmed(self, result: IAsyncResult, path: str) -> None:
        """Kazoo's completion thread: the re-armed watch's answer."""
        if isinstance(result.exception, NoNodeError):
            self._watching = None
            # Gone before the watch was re-armed. Handled on the watch thread, queued behind any
            # event read before this answer: the term base's change above all (a leader's
            # advance_term then release), or the takeover would use the base from before it.
            self._client.handler.dispatch_callback(Callback("watch", self._predecessor_gone, (path,)))
        elif result.exception is not None:
            self._watching = None
            self._session.wake_loop()

    def _predecessor_gone(self, path: str | None) -> None:
        """The znode below ours went; if it was the leader's, we lead now (see _next_in_line)."""
        connection, next_in_line, identity = self._connection, self._next_in_line, self._identity
        if next_in_line is not None and path == self._child(next_in_line.below):
            epoch, member, base = next_in_line.epoch, next_in_line.member, next_in_line.base
            # A fresh proof, and the base read with a watch that has not fired since: act on them.
            proven = self._standby.proven(epoch, self._child(member)) \
                if base[1] is not None and next_in_line.term_events == self._term_events else None
            seq, sent = parse(member).seq, None
            if identity is not None and member != self._recorded:  # sent now, not once the loop's acquire runs
                sent = send_term(self._client, self._term_path, self._child(member), seq, base[0] + seq + 1,
                                 leader_data(identity), base)
            self._heir = Takeover(epoch, connection, member, base, sent, time.monotonic(), proven)
            log.debug("the leader's znode below ours went (%s): taking over", path)
        else:
            log.debug("the znode below ours went (%s): looking again", path)
        self._next_in_line = None
        self._standby.stop()
        self._session.wake_loop()

    def _on_term(self, event: WatchedEvent) -> None:  # the term base's watch: it moved
        self._term_events += 1

    # -- the recipe --------------------------------------------------------------------------

    def _adopt(self, client: KazooClient, line: list[Contender]) -> Contender | None:
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
        data = encode({"instance_id": identity.instance_id, "host": identity.host, "pid": identity.pid})
        epoch = self._epoch
        created = self._session.wait(client.create_async(self._child(f"{self._owner}-n_"), data, ephemeral=True,
                                                 sequence=True, makepath=True), "create our znode")
        name = created.rsplit("/", 1)[-1]
        self._member = (epoch, name) if epoch == self._epoch else self._member
        log.info("joined the election under %s as %s", self._path, name)

    def _lead(self, identity: Identity, member: Contender, base: tuple[int, int | None], now: float,
              sent: tuple[IAsyncResult, int] | None = None) -> Lease | None:
        """We are the lowest: we lead. None if our znode vanished meanwhile. ``sent``: the
        takeover's transaction over ``base``, already sent (by _predecessor_gone)."""
        self._watching = None
        self._next_in_line = None
        self._standby.stop()
        term = base[0] + member.seq + 1
        # We led with this very znode before and stepped down without losing it (the connection
        # was suspended, and the session survived): a new leadership, so a new term, as after any
        # other change of leader.
        at_least = term + 1 if self._recorded == member.name else term
        try:
            term = self._raise_term(member.name, at_least, data=leader_data(identity), base=base, sent=sent)
        except LeaseLostError:
            return None
        self._recorded = member.name
        self._heir = None  # a takeover sent meanwhile (the acquire ran when the watch fired) is this one
        self._pending = None  # an earlier one's answer no longer matters: this transaction held
        return Lease(term=term, token=member.name, sent_at=now, duration=self._session.lease_duration())

    def _follow(self, client: KazooClient, member: Contender, leader: Contender, below: Contender,
                base: tuple[int, int | None]) -> Held | None:
        """Watch the znode just below ours and read the leader's; None if either vanished. The
        answer says ``watched``: the loop need not ask again before the watch wakes it."""
        arm, heir = self._watching != below.name, below == leader
        # Marked before the request: a watch event or a suspension from here on clears them, and a
        # stale mark would leave us without a watch until the loop's safety recheck. Next in line,
        # the standby acts only on the base read below with a watch (-1 until it is in).
        events, mark = self._term_events, NextInLine(self._epoch, member.name, below.name, base)
        self._next_in_line = mark if heir else None
        self._standby.follow(self._epoch, self._child(member.name) if heir else None)
        self._watching = below.name if arm else self._watching
        watched = client.get_async(self._child(below.name), watch=self._on_watch) if arm else None
        base_read = client.get_async(self._term_path, watch=self._on_term) if heir else None
        leader_read = watched if watched is not None and heir else client.get_async(self._child(leader.name))
        try:
            if watched is not None:
                self._session.wait(watched, "watch the znode below ours")
            data, _ = self._session.wait(leader_read, "read the leader's znode")
            if base_read is not None and self._next_in_line is mark:
                self._next_in_line = replace(mark, base=base_from(self._session, base_read, self._term_path),
                                             term_events=events)
        except NoNodeError:
            self._watching = self._next_in_line = None
            return None  # it went between our listing and now: look again
        except BaseException:
            self._watching = self._next_in_line = None
            raise
        return Held(record(leader, data, base[0]), watched=self._watching == below.name)

    def _raise_term(self, member: str, at_least: int, *, data: bytes | None = None,
                    base: tuple[int, int | None] | None = None, sent: tuple[IAsyncResult, int] | None = None) -> int:
        """terms.raise_term for our znode; LeaseLostError if it is gone."""
        term = raise_term(self._client, self._session, self._term_path, self._child(member), parse(member).seq,
                          at_least, data=data, base=base, sent=sent)
        if term is None:
            self._forget(member)
            raise LeaseLostError(f"our znode {member} is gone from {self._path}")
        return term

    # -- plumbing ----------------------------------------------------------------------------

    def _current_member(self) -> str | None:
        member = self._member
        return member[1] if member is not None and member[0] == self._epoch else None

    def _forget(self, name: str) -> None:
        if self._current_member() == name:
            self._member = None

    def _child(self, name: str) -> str:
        return f"{self._path}/{name}"
