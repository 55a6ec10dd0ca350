"""Replayed messages (issue 13, item 4): genuine heartbeats of a leader, captured on the wire and
sent again unchanged after it died, used to keep its followers following it for as long as the
replay lasted. Each message now carries its sender's (epoch, seq) and a receiver takes from each
sender only messages newer than the newest it took (guard.SenderGuard.fresh).

Three real peers over TCP; every connection between them passes a recording proxy.
"""

from __future__ import annotations

import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import pytest

from DistributedMutex.backends.raft.messages import Heartbeat, decode
from DistributedMutex.backends.raft.node import RaftNode
from harness.processes import wait_until
from harness.tcpproxy import TcpProxy
from support.raft_local import INFO, addresses

TIMEOUT = (0.3, 0.6)
PEERS = ("a", "b", "c")
REPLAY_EVERY = TIMEOUT[0] / 3  # the 0.4 s against lo = 1 s: well within every stickiness


class Recorder:
    """Every complete line sent towards one peer, whole, in order."""

    def __init__(self) -> None:
        self.lines: list[bytes] = []
        self._partial: dict[int, bytes] = defaultdict(bytes)
        self._lock = threading.Lock()

    def seen(self, connection: int, to_server: bool, data: bytes, at: float) -> None:
        if not to_server:
            return
        with self._lock:
            *complete, self._partial[connection] = (self._partial[connection] + data).split(b"\n")
            self.lines.extend(line + b"\n" for line in complete)

    def heartbeats_from(self, leader: str, term: int) -> list[bytes]:
        with self._lock:
            lines = list(self.lines)
        return [line for line in lines if isinstance(m := decode(line), Heartbeat) and m.src == leader and m.term == term]


@pytest.fixture
def recorded_trio(tmp_path: Path) -> Iterator[tuple[dict[str, RaftNode], dict[str, Recorder]]]:
    real = addresses(*PEERS)
    recorders = {name: Recorder() for name in PEERS}
    proxies = {name: TcpProxy(real[name][1], watch=recorders[name]).start() for name in PEERS}
    nodes = {}
    for name in PEERS:
        # Each peer listens on its own address and reaches the others through their proxies.
        peers = {other: real[other] if other == name else ("127.0.0.1", proxies[other].port) for other in PEERS}
        nodes[name] = RaftNode(name, peers, tmp_path, TIMEOUT, info=INFO)
        nodes[name].start()
    yield nodes, recorders
    for node in nodes.values():
        node.stop()
    for proxy in proxies.values():
        proxy.close()


def test_replayed_heartbeats_of_a_dead_leader_do_not_keep_its_followers(
        recorded_trio: tuple[dict[str, RaftNode], dict[str, Recorder]]) -> None:
    nodes, recorders = recorded_trio
    leader = wait_until(lambda: next((n for n, node in nodes.items() if node.status.leads_with_lease(time.monotonic())),
                                     None), 5, "no leader with a lease")
    term = nodes[leader].status.term
    followers = [name for name in PEERS if name != leader]
    captured = {name: wait_until(lambda r=recorders[name]: (h := r.heartbeats_from(leader, term))[10:] and h,
                                 5, f"fewer than 10 heartbeats to {name} captured") for name in followers}
    nodes[leader].stop()  # killed: no hand-over
    died_at = time.monotonic()

    stop_replay = threading.Event()
    replayed = [0]

    def replay() -> None:
        # Every captured heartbeat, unchanged, to each follower, every REPLAY_EVERY, over fresh
        # connections as an attacker on the network would.
        while not stop_replay.is_set():
            for name in followers:
                try:
                    with socket.create_connection(nodes[name].address, timeout=1) as sock:
                        sock.sendall(b"".join(captured[name]))
                        replayed[0] += len(captured[name])
                except OSError:
                    pass
            stop_replay.wait(REPLAY_EVERY)

    replayer = threading.Thread(target=replay, name="replay")
    replayer.start()
    try:
        # The usual bound without any replay: stickiness runs out lo after the last genuine
        # heartbeat, then an election timeout (hi at most) and a round of pre-votes and votes.
        low, high = TIMEOUT
        bound = low + 2 * high + 1.0
        new = wait_until(lambda: next((n for n in followers if nodes[n].status.leads_with_lease(time.monotonic())),
                                      None), bound, "the followers kept following the dead leader while it was replayed")
        elected_after = time.monotonic() - died_at
    finally:
        stop_replay.set()
        replayer.join(5)
    assert replayed[0] > 0 and nodes[new].status.term > term
    stale = sum(nodes[n].call(lambda c, now: c.guard.stale_messages, 2) for n in followers)
    assert stale > 0, "no replayed message was recognised as stale"
    print(f"new leader {new} in term {nodes[new].status.term} {elected_after:.2f} s after the leader died; "
          f"{replayed[0]} heartbeats replayed, {stale} dropped as stale")
