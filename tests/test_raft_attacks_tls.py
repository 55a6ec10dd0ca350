"""Attacks on a Raft cluster that runs mutual TLS (issue 13), over real loopback sockets: forged
votes, pre-votes, heartbeats and TimeoutNow from a plain TCP client, from a client whose
certificate comes from another CA, from a certificate naming no peer, and from an authenticated
peer claiming another peer's id; then 2,000 idle connections (plain and TLS) against the leader.

Each asserts that no peer's term, vote or role changed and that the leader held its lease, plus
what the listener counted. The same attacks without TLS: test_raft_attacks_net.py."""

from __future__ import annotations

import logging
import os
import resource
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from DistributedMutex.backends.raft.certificates import PeerCertificate, make_certificates
from DistributedMutex.backends.raft.core import Role
from DistributedMutex.backends.raft.limits import ListenerLimits
from DistributedMutex.backends.raft.messages import Heartbeat, Message, PreVote, TimeoutNow, Vote, encode
from DistributedMutex.backends.raft.node import RaftNode
from DistributedMutex.backends.raft.transport import query_status
from harness.processes import wait_until
from support.raft_local import INFO, ROOMY, addresses
from support.raft_tls import Authority, client_context, start_tls_trio, tls_connection, tls_of

State = dict[str, tuple[int, str | None, Role]]
DEFAULT = (1.0, 2.0)  # the library's default election timeout, for the floods
FLOOD_SECONDS = float(os.environ.get("RAFT_FLOOD_SECONDS", "8"))
FLOOD_RSS_BOUND = 64 * 2**20  # growth of this process (three peers) under a flood
TESTS = Path(__file__).parent


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[dict[str, RaftNode], dict[str, PeerCertificate]]]:
    nodes, files = start_tls_trio(tmp_path, ROOMY)
    yield nodes, files
    for node in nodes.values():
        node.stop()


def leader_of(nodes: dict[str, RaftNode], timeout: float = 10) -> RaftNode:
    def one() -> RaftNode | None:
        leaders = [n for n in nodes.values() if n.status.leads_with_lease(time.monotonic())]
        return leaders[0] if len(leaders) == 1 else None
    return wait_until(one, timeout, "no single leader with a lease")


def state(nodes: dict[str, RaftNode]) -> State:
    """Each peer's term, vote and role, read on its driver thread (after what was queued before)."""
    return {name: node.call(lambda core, now: (core.term, core.voted_for, core.role), 5)
            for name, node in nodes.items()}


def forgeries(src: str, dst: str, term: int) -> bytes:
    """Everything that could unseat a leader or move a term, claiming ``src``, freshly stamped."""
    epoch = time.time_ns() // 1000 + 10**9  # newer than any real start's
    messages: list[Message] = [
        PreVote(src, dst, term + 1, epoch=epoch, seq=1), Vote(src, dst, term + 1, epoch=epoch, seq=2),
        Vote(src, dst, term + 1, transfer=True, epoch=epoch, seq=3),
        Heartbeat(src, dst, term + 1, 1.0, epoch=epoch, seq=4), TimeoutNow(src, dst, term, epoch=epoch, seq=5),
        TimeoutNow(src, dst, term + 5, epoch=epoch, seq=6)]
    return b"".join(encode(m) for m in messages)


def refused(sock: socket.socket, timeout: float = 5) -> bool:
    """The node closed the connection (TLS 1.3: a refused client certificate shows as an alert on
    the client's first read, its handshake having seemed to succeed)."""
    sock.settimeout(timeout)
    try:
        return sock.recv(4096) == b""
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def send_all(sock: socket.socket, data: bytes) -> None:
    try:
        sock.sendall(data)
    except OSError:
        pass  # refused already: the rest need not go out


def attack(nodes: dict[str, RaftNode], connect: object, claims: list[str]) -> tuple[RaftNode, State]:
    """Send every forgery, claiming each of ``claims`` in turn, to every peer through a fresh
    connection made by ``connect(address)``; each must be closed. The leader and the state before."""
    leader = leader_of(nodes)
    before = state(nodes)
    term = leader.status.term
    for node in nodes.values():
        for src in claims:
            if src == node.node_id:
                continue
            sock = connect(node.address)  # type: ignore[operator]
            try:
                send_all(sock, forgeries(src, node.node_id, term))
                assert refused(sock), f"{node.node_id} kept a connection forging {src}"
            finally:
                sock.close()
    return leader, before


def assert_untouched(nodes: dict[str, RaftNode], leader: RaftNode, before: State) -> None:
    assert state(nodes) == before, "a forgery changed a peer's term, vote or role"
    assert leader.status.leads_with_lease(time.monotonic()), "the leader lost its lease"
    assert all(node.refused_counts() == {"implausible_term": 0, "replayed": 0} for node in nodes.values()), \
        "a forged message reached a driver"


def assert_counted(nodes: dict[str, RaftNode], kind: str, at_least: int) -> None:
    """Each node counted at least ``at_least`` refusals of ``kind``: the client may see its refusal
    (TLS 1.3 checks the client's certificate after the client thinks it is done) a moment before
    the listener counts it, so wait for the count, boundedly."""
    for node in nodes.values():
        wait_until(lambda node=node: node.transport_counts().get(kind, 0) >= at_least, 5,
                   f"{node.node_id} counted fewer than {at_least} {kind}: {node.transport_counts()}")


def test_a_plain_tcp_client_is_refused_at_the_handshake(cluster: tuple[dict[str, RaftNode], dict]) -> None:
    nodes, _ = cluster
    leader, before = attack(nodes, lambda address: socket.create_connection(address, timeout=5), list(nodes))
    assert_untouched(nodes, leader, before)
    assert_counted(nodes, "tls_refused", 2)
    with pytest.raises((OSError, ValueError)):
        query_status(leader.address, 1)  # nor does it get the status


def test_a_certificate_of_another_ca_is_refused_at_the_handshake(cluster: tuple[dict[str, RaftNode], dict],
                                                                 tmp_path: Path) -> None:
    nodes, files = cluster
    # Names a real peer and trusts the cluster's CA (so it gets as far as presenting its own).
    rogue = Authority.create(tmp_path / "rogue", "rogue CA").issue("b", ["a", "b", "c"])
    context = client_context(PeerCertificate(rogue.cert, rogue.key, files["a"].ca))
    leader, before = attack(nodes, lambda address: tls_connection(address, context), list(nodes))
    assert_untouched(nodes, leader, before)
    assert_counted(nodes, "tls_refused", 2)


def test_a_peer_with_a_certificate_of_another_ca_cannot_join_and_both_sides_say_so(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """c's certificate comes from a CA of its own, and its tls_ca holds both CAs, so c starts and
    trusts a and b; but they refuse c (at its handshake, and as a server they are refused by the
    check of c's certificate): a and b elect without it, c never leaves term 0, each side says why."""
    peers = addresses("a", "b", "c")
    files = make_certificates(tmp_path / "tls", ["a", "b"])
    rogue = Authority.create(tmp_path / "rogue", "rogue CA").issue("c", ["c"])
    bundle = tmp_path / "bundle.pem"
    bundle.write_bytes(files["a"].ca.read_bytes() + rogue.ca.read_bytes())
    files["c"] = PeerCertificate(rogue.cert, rogue.key, bundle)
    nodes = {name: RaftNode(name, peers, tmp_path / name, ROOMY, info=INFO, tls=tls_of(files[name], name))
             for name in peers}
    with caplog.at_level(logging.WARNING):
        try:
            for node in nodes.values():
                node.start()
            leader = leader_of({n: nodes[n] for n in ("a", "b")})
            time.sleep(ROOMY[1])  # c times out at least once meanwhile, and campaigns for nobody's vote
            assert state_of(nodes["c"])[0] == 0 and nodes["c"].status.leader is None, nodes["c"].status
            assert leader.status.leads_with_lease(time.monotonic()) and leader.status.term == state_of(leader)[0]
            assert_counted({leader.node_id: leader}, "tls_refused", 1)

            def said() -> list[str]:
                return [r.getMessage() for r in caplog.records]

            # c learns of the refusal on a later write of its link (TLS 1.3: the server's verdict
            # comes after the client's handshake is done): within a few of its campaigns.
            wait_until(lambda: any("refused this peer's certificate" in m for m in said()), 4 * ROOMY[1],
                       "c never said that a peer refused its certificate")
            assert any(m.startswith("raft: not talking to c at") and "fails verification" in m for m in said()), said()
        finally:
            for node in nodes.values():
                node.stop()


def test_a_certificate_naming_no_peer_is_refused(cluster: tuple[dict[str, RaftNode], dict], tmp_path: Path) -> None:
    nodes, files = cluster
    # Signed by the cluster's CA itself: only the name is wrong.
    mallory = Authority.of(files["a"], tmp_path / "same-ca").issue("mallory", ["mallory"])
    context = client_context(mallory)
    leader, before = attack(nodes, lambda address: tls_connection(address, context), list(nodes))
    assert_untouched(nodes, leader, before)
    assert_counted(nodes, "unknown_certificate", 2)


def test_an_authenticated_peer_claiming_another_id_is_dropped(cluster: tuple[dict[str, RaftNode], dict]) -> None:
    nodes, files = cluster
    leader = leader_of(nodes)
    follower, other = [name for name in nodes if name != leader.node_id]
    # The follower's own certificate: everything it claims but its own id is dropped, the leader's
    # id (forged heartbeats to the other follower) and the other follower's (votes to the leader).
    context = client_context(files[follower])
    leader, before = attack(nodes, lambda address: tls_connection(address, context),
                            [leader.node_id, other])
    assert_untouched(nodes, leader, before)
    assert_counted({name: nodes[name] for name in (leader.node_id, other)}, "wrong_sender", 1)
    assert_counted({follower: nodes[follower]}, "wrong_sender", 2)
    # What it may do: ask for the status.
    assert query_status(leader.address, 2, tls=tls_of(files[follower], follower))["role"] == "leader"


def test_what_the_guard_drops_from_an_authenticated_peer_is_counted_and_logged(
        cluster: tuple[dict[str, RaftNode], dict], caplog: pytest.LogCaptureFixture) -> None:
    """A genuine peer's key can still send nonsense under its own id: a term far ahead (the jump
    budget) and a stale stamp (the replay window) are dropped by the core's guard, visibly."""
    nodes, files = cluster
    leader = leader_of(nodes)
    follower = next(name for name in nodes if name != leader.node_id)
    before, term = state(nodes), leader.status.term
    far = Heartbeat(follower, leader.node_id, term + 10**6, 1.0, epoch=time.time_ns() // 1000 + 10**9, seq=1)
    stale = PreVote(follower, leader.node_id, term + 1, epoch=1, seq=1)  # older than the follower's start
    with caplog.at_level(logging.WARNING), tls_connection(leader.address, client_context(files[follower])) as sock:
        sock.sendall(encode(far) + encode(stale))
        counted = wait_until(lambda: leader.refused_counts() if sum(leader.refused_counts().values()) >= 2 else None,
                             5, "the guard did not count both")
        assert not refused(sock, 0.3), "an authenticated peer's own connection was closed"
    assert counted == {"implausible_term": 1, "replayed": 1}
    status = query_status(leader.address, 2, tls=tls_of(files[follower], follower))
    assert status["refused"] == counted, status
    said = [r.getMessage() for r in caplog.records if r.name.endswith("raft.node")]
    assert any(f"dropped a Heartbeat from {follower}: its term {term + 10**6} is further ahead" in m for m in said), said
    assert any(f"dropped a PreVote from {follower}: a replay (epoch 1, seq 1" in m for m in said), said
    assert state(nodes) == before and leader.status.leads_with_lease(time.monotonic())


def test_two_thousand_idle_plain_and_tls_connections_leave_the_leader_leading(
        cluster: tuple[dict[str, RaftNode], dict]) -> None:
    nodes, files = cluster
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 4000:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(4000, hard), hard))
    leader = leader_of(nodes)
    before, threads, baseline = state(nodes), threading.active_count(), rss()
    listener = leader.listener
    assert listener is not None
    follower = next(name for name in nodes if name != leader.node_id)
    context = client_context(files[follower])
    idle: list[socket.socket] = []
    lost: list[tuple[str, int]] = []
    started = time.monotonic()
    try:
        for index in range(2000):
            if index % 4 == 0:  # 500 complete the handshake as a genuine peer would, then say nothing
                try:
                    idle.append(tls_connection(leader.address, context))
                except OSError:
                    pass  # evicted mid-handshake to make room: that is the point
            else:
                idle.append(socket.create_connection(leader.address, timeout=5))
            if index % 100 == 0 and not leader.status.leads_with_lease(time.monotonic()):
                lost.append((leader.status.role.value, leader.status.term))
        opened = time.monotonic() - started
        wait_until(lambda: listener.connections + listener.counts().get("evicted", 0) >= 1500, 15,
                   "the listener did not take up the connections")
        status = query_status(leader.address, 2, tls=tls_of(files[follower], follower))
        grown = threading.active_count() - threads
        print(f"2,000 idle connections (500 TLS) in {opened:.1f} s: {grown:+d} threads, {listener.connections} "
              f"held, RSS {baseline / 2**20:.0f} -> {rss() / 2**20:.0f} MB (the clients' side included), "
              f"counts {listener.counts()}")
        assert status["role"] == "leader", status
        assert lost == [], f"the leader lost its lease while the connections came: {lost}"
        assert grown <= 2, f"{grown} more threads"
        assert listener.connections <= ListenerLimits().max_connections
    finally:
        for sock in idle:
            sock.close()
    assert state(nodes) == before
    assert leader.status.leads_with_lease(time.monotonic())


@pytest.mark.parametrize("mode", ["handshake", "stream"])
def test_the_leader_holds_through_a_tls_flood(tmp_path: Path, mode: str) -> None:
    """"handshake": strangers opening TLS connections as fast as 8 threads can (each costs the
    peer a key exchange and a signature before it refuses the missing certificate); "stream": an
    authenticated follower's 8 connections streaming stale heartbeats (its own id: allowed, and
    held to each connection's quota)."""
    nodes, files = start_tls_trio(tmp_path, DEFAULT)
    try:
        leader = leader_of(nodes, timeout=15)
        term = leader.status.term
        follower = next(name for name in nodes if name != leader.node_id)
        extra = ([] if mode == "handshake" else
                 [str(files[follower].cert), str(files[follower].key), str(files[follower].ca), follower,
                  leader.node_id])
        baseline, peak, lost = rss(), 0, []
        flood = subprocess.Popen(
            [sys.executable, "-m", "support.raft_tls_flood", *map(str, leader.address), str(FLOOD_SECONDS), "8", mode,
             *extra], cwd=TESTS, stdout=subprocess.PIPE, text=True,
            env={**os.environ, "PYTHONPATH": f"{TESTS.parent / 'src'}:{TESTS}"})
        try:
            deadline = time.monotonic() + FLOOD_SECONDS
            while time.monotonic() < deadline:
                status = leader.status
                if status.role is not Role.LEADER or status.term != term:
                    lost.append((round(deadline - time.monotonic(), 2), status.role.value, status.term))
                peak = max(peak, rss())
                time.sleep(0.1)
            out, _ = flood.communicate(timeout=FLOOD_SECONDS + 10)
        finally:
            flood.kill()
            flood.wait(5)
        done = int(out.split()[-1])
        print(f"TLS flood ({mode}): {done} {'handshakes' if mode == 'handshake' else 'bytes'} in "
              f"{FLOOD_SECONDS:g} s; RSS {baseline / 2**20:.0f} -> peak {peak / 2**20:.0f} MB; "
              f"{leader.transport_counts()}")
        assert done > 0, "the flood did nothing"
        assert lost == [], f"the leader lost its leadership under the flood: {lost}"
        assert {n: state_of(node)[0] for n, node in nodes.items()} == {n: term for n in nodes}
        assert peak - baseline < FLOOD_RSS_BOUND, f"memory grew by {(peak - baseline) / 2**20:.0f} MB"
    finally:
        for node in nodes.values():
            node.stop()


def state_of(node: RaftNode) -> tuple[int, str | None, Role]:
    return node.call(lambda core, now: (core.term, core.voted_for, core.role), 5)


def rss() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")
