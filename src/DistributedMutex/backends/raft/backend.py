"""Raft as an election backend: the instances elect their leader among themselves, no service.

    RaftBackend(peers={"a": ("10.0.0.1", 7001), ...}, node_id="a", data_dir="raft-data")

``election_timeout`` defaults to (1.0, 2.0) seconds, the loop's timing follows from it
(arguments.raft_timing: a 1 s lease renewed every 0.3 s, acted on until 0.25 s before it ends).

The peer (node.py) starts at the first ``acquire``, which brings the identity its heartbeats carry.
Every call then reads the peer's latest snapshot: no network round trip, so renewing is cheap.

The lease: a Raft leader holds one from the newest heartbeat round a majority acked, for the
minimum election timeout ``lo`` (core.py says why nobody else can be elected before then). So
``Lease(sent_at=that round's send time, duration=lo)``, on this process's time.monotonic(), as
the ElectionBackend contract wants. The term is the fencing token.

``release`` hands leadership over (TimeoutNow): the peer that answered last campaigns at once,
so a graceful stop fails over in milliseconds. Its votes bypass stickiness, so the hand-over ends
every lease of the term it leaves: once ``release`` is called for a term, no Lease of that term or
an older one is handed out again, whatever the peer's snapshot still says and even before the
hand-over has happened (a peer never leads one term twice, so this costs nothing). ``release``
does not wait for the hand-over: made at once if the peer's core is free, else queued for its
driver (and waited for by ``close``, bounded). ``advance_term`` has the
leader campaign again in a higher term; its followers vote for it (it is the leader they stick to)
and nobody else can win meanwhile, so the lease it holds stays good until the new term's lease
replaces it.
"""

from __future__ import annotations

import concurrent.futures
import functools
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from os import PathLike
from typing import Any

from DistributedMutex.backend import Held, Identity, LeaderRecord, Lease
from DistributedMutex.backends.raft.arguments import (
    DEFAULT_ELECTION_TIMEOUT,
    check_data_dir,
    check_election_timeout,
    check_heartbeat_interval,
    check_node_id,
    check_peers,
    raft_timing,
)
from DistributedMutex.backends.raft.connection import tls_reason
from DistributedMutex.backends.raft.core import Role
from DistributedMutex.backends.raft.messages import MAX_TERM, LeaderInfo
from DistributedMutex.backends.raft.node import RaftNode
from DistributedMutex.backends.raft.status import NodeStatus
from DistributedMutex.backends.raft.tls import TlsConfig, check_tls_needed, load_tls
from DistributedMutex.backends.raft.transport import query_status
from DistributedMutex.errors import LeaseLostError, StorageRejectedError, StorageUnavailableError
from DistributedMutex.timing import ElectionTiming

log = logging.getLogger(__name__)
STATUS_TIMEOUT = 1.0  # per peer, asked side by side, for read_leader() from outside the cluster


@dataclass(frozen=True)
class _Terms:
    """What this backend did to its leaderships, replaced whole on every change (see _view)."""

    # advance_term moves a leadership to a new term: the old term's leases live on in it.
    moved: Mapping[int, int] = field(default_factory=dict)  # never changed in place
    moving: int | None = None  # the term we are re-campaigning from
    released: int = 0  # the highest term given up: never a Lease of it (or older) again

    def current(self, term: int) -> int:
        while term in self.moved:
            term = self.moved[term]
        return term


class RaftBackend:
    name = "raft"
    # How long advance_term waits for the peer's driver thread (a call not taken up by then is
    # dropped, never run later), and close() for a hand-over that release queued.
    call_timeout = 1.0

    def __init__(self, peers: Mapping[str, tuple[str, int] | str], node_id: str, data_dir: str | PathLike[str],
                 election_timeout: tuple[float, float] = DEFAULT_ELECTION_TIMEOUT, *,
                 heartbeat_interval: float | None = None, names: Mapping[str, str] | None = None,
                 tls_cert: str | PathLike[str] | None = None, tls_key: str | PathLike[str] | None = None,
                 tls_ca: str | PathLike[str] | None = None) -> None:
        """``peers``: every peer of the cluster, this one included, as ``{id: (host, port)}``;
        ``node_id``: this peer's id in it; ``data_dir``: where its term and vote are kept
        (``<data_dir>/<node_id>.json``); ``election_timeout``: (min, max) seconds;
        ``heartbeat_interval``: seconds between the leader's heartbeat rounds, by default a tenth of
        the minimum election timeout, at most arguments.max_heartbeat_interval (0.35 of it).
        ``tls_cert``, ``tls_key``, ``tls_ca``: PEM files for mutual TLS between the peers (all three
        or none): this peer's certificate, naming ``node_id`` as subjectAltName=DNS:<node_id>, its
        unencrypted key, and the CA that signed every peer's certificate (tls.py). Without them the
        peers talk plain TCP, which only a cluster on loopback addresses may do.
        ``names``: what the caller calls these arguments in its own settings, for messages."""
        self._names = dict(names or {})
        self._peers = check_peers(self._name("peers"), peers)
        self._node_id = check_node_id(self._name("node_id"), node_id, self._peers, self._name("peers"))
        self._data_dir = check_data_dir(self._name("data_dir"), data_dir)
        self._election_timeout = check_election_timeout(self._name("election_timeout"), election_timeout)
        self._heartbeat_interval = check_heartbeat_interval(self._name("heartbeat_interval"), heartbeat_interval,
                                                            self._election_timeout)
        self._tls = load_tls(self._node_id, tls_cert, tls_key, tls_ca, self._name)
        if self._tls is None:
            check_tls_needed(self._peers, self._name)
        self._node: RaftNode | None = None
        self._lock = threading.Lock()
        self._wake: Callable[[], None] | None = None
        self._handing_over: concurrent.futures.Future[str | None] | None = None  # the latest hand-over asked for
        self._terms = _Terms()
        self._terms_lock = threading.Lock()  # for writers; readers take one consistent _view

    @property
    def tls(self) -> TlsConfig | None:
        """The checked TLS files and contexts; None: plain TCP (loopback only)."""
        return self._tls

    @property
    def lease_duration(self) -> float:
        return self._election_timeout[0]

    @property
    def lease_basis(self) -> str:
        """Where the lease's length comes from, for the message refusing a longer timing."""
        return f"election_timeout minimum {self._election_timeout[0]:g} s"

    def default_timing(self) -> ElectionTiming:
        """From the minimum election timeout and the heartbeat interval (see arguments.raft_timing)."""
        return raft_timing(self._election_timeout, self._heartbeat_interval)

    # -- ElectionBackend ---------------------------------------------------------------------

    def watch(self, wake: Callable[[], None]) -> None:
        self._wake = wake

    def answers_at_once(self, call: str) -> bool:
        """backend.AT_ONCE: renew, and acquire once the peer runs, only read its latest snapshot
        (no I/O, no lock held across any: see _view); release marks the term given up and asks
        for the hand-over without waiting for it (_hand_over). The loop makes them on its own
        thread. The first acquire starts the peer (a bind, a file read): not at once."""
        return call in ("renew", "release") or (call == "acquire" and self._node is not None)

    def acquire(self, identity: Identity, now: float) -> Lease | Held:
        node = self._started(identity)
        terms, status = self._view(node)
        if status.role is Role.LEADER and status.term <= terms.released:
            # Given up, but the hand-over has not happened (the release timed out and was dropped):
            # have it done now, or this peer would lead on with a lease nobody may use. Queued for
            # the peer's driver, not waited for: this call answers at once (answers_at_once).
            self._hand_over(node, status.term)
            return Held(LeaderRecord(None, status.term, lease_state="available"))
        if status.leads_with_lease(now):
            return self._lease(status, status.lease_sent_at)
        if status.role is Role.LEADER:
            # Elected, but no majority has acked a heartbeat yet: the wake-up follows within a round trip.
            return Held(LeaderRecord(None, status.term, lease_state="available"))
        return Held(_record(status, now))

    def renew(self, lease: Lease, now: float) -> Lease:
        terms, status = self._view(self._running())
        term = terms.current(lease.term)
        if term <= terms.released:
            raise LeaseLostError(f"no longer the Raft leader of term {term} (released it)")
        if terms.moving == term:
            return lease  # re-campaigning: the lease we had still holds (see advance_term)
        if status.role is not Role.LEADER or status.term != term:
            raise LeaseLostError(f"no longer the Raft leader of term {term} "
                                 f"(now {status.role.value} in term {status.term})")
        # Leading ever since: a lease we were given stays good to its end, even if no majority
        # has acked a round of a term we moved to yet.
        return self._lease(status, max(status.lease_sent_at, lease.sent_at))

    def advance_term(self, lease: Lease, identity: Identity, at_least: int) -> Lease:
        node = self._running()
        with self._terms_lock:  # no other writer: these are one moment's terms and status
            terms, status = self._terms, node.status
            term = terms.current(lease.term)
            if term <= terms.released or status.role is not Role.LEADER or status.term != term:
                raise LeaseLostError(f"no longer the Raft leader of term {term}")
            if at_least <= term:
                return self._lease(status, max(status.lease_sent_at, lease.sent_at))
            if at_least > MAX_TERM:
                raise StorageRejectedError(f"at_least={at_least} is above the highest Raft term, {MAX_TERM}")
            if terms.moving is not None:
                # An earlier advance_term (given up on by its caller) still campaigns.
                raise StorageUnavailableError(f"already campaigning again from term {terms.moving}")
            # Before the peer campaigns: a renew that sees it campaigning must also see this.
            self._terms = replace(terms, moving=term)
        moved_to: int | None = None
        try:
            done = self._recampaign(node, term, at_least)
            moved_to = done.term
        finally:
            with self._terms_lock:
                # Both at once, once the peer leads the new term: a renew sees the move or the
                # re-campaign, never neither.
                terms = self._terms
                moved = terms.moved if moved_to is None else {**terms.moved, term: moved_to}
                self._terms = replace(terms, moved=moved, moving=None)
        log.info("raft: leadership moved from term %d to term %d", term, done.term)
        return self._lease(done, max(done.lease_sent_at, lease.sent_at))

    def release(self, lease: Lease) -> None:
        node = self._node
        if node is None:
            return
        with self._terms_lock:
            terms = self._terms
            term = terms.current(lease.term)
            # Before the hand-over is asked for: whenever it happens, no Lease of this term is
            # handed out from then on, even from a snapshot taken before it.
            self._terms = replace(terms, released=max(terms.released, term))
        self._hand_over(node, term)  # at once: made here, or queued for the peer's driver

    def read_leader(self) -> LeaderRecord | None:
        node = self._node
        if node is not None:
            return _record(node.status, time.monotonic())
        return self._ask_peers()

    def close(self) -> None:
        with self._lock:
            node, self._node = self._node, None
        if node is not None:
            handing = self._handing_over
            if handing is not None:  # queued, the core being busy when released: out before the peer stops
                concurrent.futures.wait([handing], timeout=self.call_timeout)
            node.stop()

    # -- helpers -----------------------------------------------------------------------------

    def _started(self, identity: Identity) -> RaftNode:
        with self._lock:
            if self._node is None:
                node = RaftNode(self._node_id, self._peers, self._data_dir, self._election_timeout,
                                info=LeaderInfo(identity.instance_id, identity.host, identity.pid),
                                heartbeat_interval=self._heartbeat_interval, on_change=self._changed,
                                tls=self._tls)
                try:
                    node.start()
                except (OSError, ValueError) as exc:
                    raise StorageRejectedError(self._start_failure(exc)) from None
                self._node = node
                if self._tls is None:
                    log.warning("raft: the peers are not authenticated (no %s, %s, %s): any process on this machine "
                                "can vote, lead or move the term; set them to use mutual TLS",
                                self._name("tls_cert"), self._name("tls_key"), self._name("tls_ca"))
            return self._node

    def _start_failure(self, exc: OSError | ValueError) -> str:
        host, port = self._peers[self._node_id]
        if isinstance(exc, OSError) and exc.filename is None and exc.errno is not None:
            return (f"cannot listen on {host}:{port}, the address of {self._name('node_id')}={self._node_id} in "
                    f"{self._name('peers')}: {os.strerror(exc.errno)}")
        return f"cannot use {self._name('data_dir')}={self._data_dir} for Raft peer {self._node_id}: {exc}"

    def _name(self, argument: str) -> str:
        return self._names.get(argument, argument)

    def _running(self) -> RaftNode:
        node = self._node
        if node is None:
            raise LeaseLostError("the Raft peer is not running")
        return node

    def _view(self, node: RaftNode) -> tuple[_Terms, NodeStatus]:
        """The terms and the peer's status as of one moment.

        advance_term records that it re-campaigns before the peer does, and that it moved once
        the peer leads the new term: read apart, a renew could see neither (the status of the
        campaign with no re-campaign recorded, or the new term with no move recorded) and call a
        good lease lost. Read again if the terms changed meanwhile (they seldom do)."""
        while True:
            terms = self._terms
            status = node.status
            if self._terms is terms:
                return terms, status

    def _hand_over(self, node: RaftNode, term: int) -> None:
        """Have the peer hand ``term`` over without waiting for it (release and acquire answer at
        once): made in this thread if the peer's core is free, else queued for its driver, which
        runs it as soon as it can (a late hand-over of a term given up is still the right thing to
        do); close() lets a queued one go out before the peer stops."""
        handing = self._handing_over = node.transfer_soon(term)
        handing.add_done_callback(lambda done: self._handed_over(term, done))

    def _handed_over(self, term: int, done: concurrent.futures.Future[str | None]) -> None:
        if done.cancelled():
            log.warning("raft: could not hand leadership of term %d over: the peer stopped first", term)
        elif done.exception() is not None:
            log.error("raft: handing leadership of term %d over failed: %r", term, done.exception())
        elif done.result() is not None:
            log.info("raft: handed leadership of term %d over to %s", term, done.result())

    def _changed(self) -> None:
        wake = self._wake
        if wake is not None:
            wake()

    def _recampaign(self, node: RaftNode, term: int, at_least: int) -> NodeStatus:
        """Campaign again from ``term`` for a term >= ``at_least``; the status once it leads there."""
        low, high = self._election_timeout
        try:
            started = node.recampaign(term, at_least, timeout=self.call_timeout)
        except TimeoutError as exc:
            raise StorageUnavailableError(str(exc)) from None
        if not started:
            raise LeaseLostError(f"no longer the Raft leader of term {term}")
        done = node.wait_until(lambda s: s.role is not Role.CANDIDATE and s.term >= at_least, timeout=low + high)
        if done.role is not Role.LEADER or done.term < at_least:
            raise LeaseLostError(f"campaigning again for a term >= {at_least} failed "
                                 f"(now {done.role.value} in term {done.term})")
        return done

    def _lease(self, status: NodeStatus, sent_at: float) -> Lease:
        if status.term <= self._terms.released:  # the last word on it: see release()
            raise LeaseLostError(f"gave the Raft leadership of term {status.term} up")
        return Lease(term=status.term, token=f"{self._node_id}@{status.term}", sent_at=sent_at,
                     duration=self.lease_duration)

    def _ask_peers(self) -> LeaderRecord | None:
        """Who leads, from the peers' own answers: the leader named in the highest term wins."""
        with ThreadPoolExecutor(max_workers=len(self._peers)) as pool:
            answers = list(pool.map(functools.partial(_ask, tls=self._tls), self._peers.items()))
        statuses = [answer for answer in answers if isinstance(answer, dict)]
        if not statuses:
            tried = ", ".join(f"{peer}={host}:{port}" for peer, (host, port) in self._peers.items())
            raise StorageUnavailableError(f"no Raft peer answered ({tried}): {answers[0]}")
        leading = [s for s in statuses if s.get("lease_state") == "leased" and s.get("leader")]
        best = max(leading or statuses, key=lambda s: s.get("term", 0))
        return _record_from_json(best)


def _ask(peer: tuple[str, tuple[str, int]], tls: TlsConfig | None) -> dict[str, Any] | str:
    peer_id, address = peer
    try:
        return query_status(address, STATUS_TIMEOUT, tls=tls, peer_id=peer_id)
    except ssl.SSLError as exc:  # OpenSSL's text ends in "(_ssl.c:1006)": the short reason says it
        return f"{address[0]}:{address[1]}: TLS refused ({tls_reason(exc)})"
    except (OSError, ValueError) as exc:
        return f"{address[0]}:{address[1]}: {exc}"


def _record(status: NodeStatus, now: float) -> LeaderRecord:
    info = status.leader_info
    state = status.lease_state(now)
    leader_id = None if status.leader is None else (info.instance_id if info else status.leader)
    return LeaderRecord(leader_id, status.term, host=info.host if info else None, pid=info.pid if info else None,
                        lease_state=state)


def _record_from_json(status: dict[str, Any]) -> LeaderRecord:
    info = status.get("leader_info") or {}
    leader = status.get("leader")
    return LeaderRecord(info.get("instance_id", leader) if leader else None, int(status.get("term", 0)),
                        host=info.get("host"), pid=info.get("pid"), lease_state=status.get("lease_state"))
