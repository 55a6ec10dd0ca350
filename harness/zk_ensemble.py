"""A 3-server ZooKeeper ensemble on loopback whose follower-to-leader links can be cut, and the
demonstration that a leader's renewal must be a write (run it: it is opt-in, not part of `make test`).

    PYTHONPATH=src:. .venv/bin/python -m harness.zk_ensemble

Each member dials the other members' quorum ports through a TcpProxy of its own (its zoo.cfg
names the proxy's port), so one follower can be cut from the leader while it keeps serving its
clients. The election ports are dialled directly: only the follower-to-leader link is cut.

The scenario (the reviewer's): our contender leads through follower F only; another contender
waits through the other follower G. The link F -> leader is blackholed. The leader stops hearing
about our session (F relays its clients' pings to the leader with each of its ping answers), expires
it, deletes our znode, and the other contender leads. F does not notice for syncLimit x tickTime
(10 s here, longer than the 4 s session, as with Debian's defaults: 5 x 2 s = 10 s > 5 s) and goes
on answering reads and pings from its stale copy of the tree:

    a read-only renewal (exists on our znode, the old renew)  -> our znode, our session: a lease
    ZooKeeperBackend.renew (a transaction the leader checks)   -> fails: no lease

Exit status 0 when both happen as described (and the read-only renewal is shown granting a lease
while another contender already leads), 1 otherwise.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

from DistributedMutex.backend import Held, Identity, Lease
from DistributedMutex.backends.zookeeper.backend import ZooKeeperBackend
from DistributedMutex.errors import BackendError

from .processes import wait_until
from .services import ZooKeeperServer, free_port
from .tcpproxy import TcpProxy

log = logging.getLogger("zk_ensemble")

TICK = 0.5  # s: the server grants sessions of 2 to 20 ticks, 1 to 10 s
SYNC_LIMIT = 20  # ticks: a follower cut from the leader notices after 10 s, longer than SESSION
INIT_LIMIT = 10
SESSION = 4.0


class QuorumMember(ZooKeeperServer):
    """One server of an ensemble: ZooKeeperServer's process, with myid and the quorum's lines."""

    main_class = "org.apache.zookeeper.server.quorum.QuorumPeerMain"

    def __init__(self, myid: int, tick: float = TICK, sync_limit: int = SYNC_LIMIT) -> None:
        super().__init__(tick)
        self.myid = myid
        self.sync_limit = sync_limit
        self.quorum_port = free_port()
        self.election_port = free_port()
        # Every other member: myid -> (the port dialled for its quorum port, its election port).
        self.peers: dict[int, tuple[int, int]] = {}

    def config_lines(self) -> list[str]:
        (self.directory / "data" / "myid").write_text(f"{self.myid}\n")
        return [*super().config_lines(), f"initLimit={INIT_LIMIT}", f"syncLimit={self.sync_limit}",
                f"server.{self.myid}=127.0.0.1:{self.quorum_port}:{self.election_port}",
                *(f"server.{peer}=127.0.0.1:{quorum}:{election}"
                  for peer, (quorum, election) in sorted(self.peers.items()))]

    def serving(self) -> bool:
        return self.mode() in ("leader", "follower")


class ZooKeeperEnsemble:
    """Three QuorumMembers; ``link(a, b)`` is the proxy member ``a`` dials member ``b``'s quorum port through."""

    def __init__(self, size: int = 3) -> None:
        self.members = {myid: QuorumMember(myid) for myid in range(1, size + 1)}
        self.links: dict[tuple[int, int], TcpProxy] = {}
        for myid, member in self.members.items():
            for peer, other in self.members.items():
                if peer != myid:
                    proxy = TcpProxy(other.quorum_port).start()
                    self.links[(myid, peer)] = proxy
                    member.peers[peer] = (proxy.port, other.election_port)

    def start(self, timeout: float = 30.0) -> ZooKeeperEnsemble:
        for member in self.members.values():
            member.launch()
        for member in self.members.values():
            member.wait_ready(timeout)
        return self

    def leader(self) -> int:
        modes = {myid: member.mode() for myid, member in self.members.items()}
        leaders = [myid for myid, mode in modes.items() if mode == "leader"]
        assert len(leaders) == 1, f"not one leader: {modes}"
        return leaders[0]

    def link(self, member: int, peer: int) -> TcpProxy:
        return self.links[(member, peer)]

    def stop(self) -> None:
        for proxy in self.links.values():
            proxy.close()
        for member in self.members.values():
            member.stop()


@contextmanager
def ensemble() -> Iterator[ZooKeeperEnsemble]:
    running = ZooKeeperEnsemble()
    try:
        yield running.start()
    finally:
        running.stop()


def read_only_renewal(backend: ZooKeeperBackend, lease: Lease) -> bool:
    """What renew() did before it wrote: our znode exists and its owner is our session (a read,
    which the server we are connected to answers from its own copy)."""
    client = backend._client  # the backend's own session and connection
    stat = client.exists_async(f"{backend._path}/{lease.token}").get(timeout=2)
    session = client.client_id
    return stat is not None and session is not None and stat.owner_session_id == session[0]


def demonstrate(zk: ZooKeeperEnsemble) -> dict[str, object]:
    """The scenario above; returns what happened, with times relative to the cut (s)."""
    leader = zk.leader()
    f, g = [myid for myid in zk.members if myid != leader]
    path = f"/ensemble-{uuid.uuid4().hex[:8]}"
    ours = ZooKeeperBackend(zk.members[f].hosts, path, session_timeout=SESSION)
    other = ZooKeeperBackend(zk.members[g].hosts, path, session_timeout=SESSION)
    woken = threading.Event()
    other.watch(woken.set)
    seen: dict[str, object] = {"leader": leader, "ours_via": f, "other_via": g}
    try:
        lease = ours.acquire(Identity("ours"), time.monotonic())
        assert isinstance(lease, Lease), lease
        assert isinstance(other.acquire(Identity("other"), time.monotonic()), Held)
        assert read_only_renewal(ours, lease)
        ours.renew(lease, time.monotonic())  # both ways work while F follows the leader

        zk.link(f, leader).blackhole()
        cut = time.monotonic()
        log.info("cut follower %d from leader %d; our session is %g s", f, leader, SESSION)
        woken.wait(SESSION + 5)
        took_over = other.acquire(Identity("other"), time.monotonic())
        assert isinstance(took_over, Lease), f"the other contender did not lead: {took_over}"
        seen["other_leads_after"] = round(time.monotonic() - cut, 3)
        seen["follower_mode_then"] = zk.members[f].mode()

        sent = time.monotonic()
        seen["read_only_renewal_grants"] = read_only_renewal(ours, lease)
        seen["read_only_renewal_lease_until"] = round(sent + SESSION - cut, 3)
        started = time.monotonic()
        try:
            renewed = ours.renew(lease, time.monotonic())
            seen["renew"] = f"granted a lease of {renewed.duration:g} s"
        except BackendError as exc:
            seen["renew"] = f"{type(exc).__name__}: {exc}"
        seen["renew_took"] = round(time.monotonic() - started, 3)
        fell = wait_until(lambda: zk.members[f].mode() != "follower" and time.monotonic(), SYNC_LIMIT * TICK + 5,
                          "the cut-off follower noticing")
        seen["follower_stops_serving_after"] = round(fell - cut, 3)
        return seen
    finally:
        other.close()
        ours.close()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("kazoo").setLevel(logging.CRITICAL)
    started = time.monotonic()
    with ensemble() as zk:
        log.info("ensemble up in %.1f s: leader %d", time.monotonic() - started, zk.leader())
        seen = demonstrate(zk)
    for key, value in seen.items():
        print(f"{key}: {value}")
    print(f"total: {time.monotonic() - started:.1f} s")
    ok = seen["read_only_renewal_grants"] is True and not str(seen["renew"]).startswith("granted")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
