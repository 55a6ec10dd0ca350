"""Attacks on the Raft term from a client with no identity (issue 13): forged terms out of range
or far ahead, against the pure core and against three real peers over TCP.

Each asserts that no node's term, vote or role changed, and that the cluster still elects.
"""

from __future__ import annotations

import itertools
import random
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from DistributedMutex.backends.raft.core import HardState, RaftCore, Role
from DistributedMutex.backends.raft.guard import TERM_SLACK
from DistributedMutex.backends.raft.messages import (
    MAX_TERM,
    Heartbeat,
    LeaderInfo,
    Message,
    PreVote,
    TimeoutNow,
    Vote,
    encode,
)
from DistributedMutex.backends.raft.node import RaftNode
from harness.processes import wait_until
from support.raft_local import INFO, TIMEOUT, addresses

LO, HI, BEAT = 1.0, 2.0, 0.1
PEERS = ("a", "b", "c")


def core(node: str, *, now: float = 0.0, term: int = 0) -> RaftCore:
    return RaftCore(node, list(PEERS), election_timeout=(LO, HI), heartbeat_interval=BEAT,
                    rng=random.Random(7), persisted=HardState(term), now=now,
                    info=LeaderInfo(f"instance-{node}", "host", 1))


_seqs = itertools.count(1)


def fresh(m: Message) -> Message:
    """As a forger writes it: stamped newer than anything the receiver took (see guard.SenderGuard.fresh)."""
    return replace(m, epoch=1, seq=next(_seqs))


def state(c: RaftCore) -> tuple[int, str | None, Role, str | None]:
    return c.term, c.voted_for, c.role, c.leader


def test_a_forged_heartbeat_far_ahead_is_dropped_and_an_honest_one_still_counts() -> None:
    b = core("b", term=3)
    before = state(b)
    for term in (3 + TERM_SLACK + 50, 10**6, MAX_TERM):  # 1 s (lo) in: slack + 6 terms allowed
        out = b.step(fresh(Heartbeat("a", "b", term, 1.0)), now=1.0)
        assert out.messages == [] and out.hard_state is None and state(b) == before
    assert b.guard.implausible_terms == 3
    b.step(fresh(Heartbeat("a", "b", 4, 1.0)), now=1.0)
    assert (b.term, b.leader) == (4, "a")


@pytest.mark.parametrize("forged", [
    PreVote("a", "b", 10**6), Vote("a", "b", 10**6), Vote("a", "b", 10**6, transfer=True),
    TimeoutNow("a", "b", 10**6), Heartbeat("a", "b", 10**6, 1.0),
])
def test_no_kind_of_message_moves_the_term_far_ahead(forged: Message) -> None:
    b = core("b", term=3)
    before = state(b)
    out = b.step(fresh(forged), now=5.0)
    assert out.messages == [] and out.hard_state is None and state(b) == before


def test_repeated_forgeries_move_the_term_only_at_the_bounded_rate() -> None:
    """A forger that spends the slack at once is then held to the rate per lo: a thousand forged
    heartbeats a millisecond apart for one second gain it almost nothing more."""
    b = core("b")
    now = 0.0
    for _ in range(1000):
        now += 0.001
        b.step(fresh(Heartbeat("a", "b", b.term + TERM_SLACK, now)), now)
    assert b.term <= TERM_SLACK + 2 * 3 * 2  # the slack, then 2 per node per lo (lo = 1 s here)


def test_a_peer_silent_for_long_catches_up_with_the_cluster() -> None:
    b = core("b", term=3)
    b.step(fresh(Heartbeat("a", "b", 3 + 5000, 1000.0)), now=1000.0)  # a thousand lo of silence from a
    assert (b.term, b.leader) == (5003, "a")


def test_no_node_campaigns_above_the_ceiling() -> None:
    a = core("a", term=MAX_TERM)
    out = a.tick(100.0)
    assert out.messages == [] and a.term == MAX_TERM and a.role is Role.FOLLOWER
    with pytest.raises(ValueError, match="above the highest term"):
        leader = core("a", term=1)
        leader.role = Role.LEADER
        leader.recampaign(MAX_TERM + 1, 1.0)


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[dict[str, RaftNode]]:
    peers = addresses(*PEERS)
    nodes = {name: RaftNode(name, peers, tmp_path, TIMEOUT, info=INFO) for name in peers}
    for node in nodes.values():
        node.start()
    yield nodes
    for node in nodes.values():
        node.stop()


def leader_of(nodes: dict[str, RaftNode]) -> str:
    name: str = wait_until(lambda: next((n for n, node in nodes.items() if node.status.leads_with_lease(_now())), None),
                      5, "no leader with a lease")
    return name


def _now() -> float:
    return time.monotonic()


def hard(node: RaftNode) -> tuple[int, str | None, Role]:
    return node.call(lambda c, now: (c.term, c.voted_for, c.role), 2)


def test_a_forged_heartbeat_with_a_huge_term_over_tcp_changes_nobody(trio: dict[str, RaftNode]) -> None:
    """Issue 13, item 1: one line claiming the leader's id with a term far ahead used to be
    adopted and saved by every peer. Now each drops it, and the cluster still elects."""
    leader = leader_of(trio)
    before = {name: hard(node) for name, node in trio.items()}
    term = before[leader][0]
    for name, node in trio.items():
        if name == leader:
            continue
        for forged in (term + 10**6, MAX_TERM, -1):
            # Stamped far ahead, as a forger would: the stamp must not make the leader's stale.
            line = encode(replace(Heartbeat(leader, name, forged, 1.0), epoch=2**52, seq=1)) if forged > 0 else (
                b'{"type":"heartbeat","src":"%s","dst":"%s","term":1%s,"sent_at":1.0,"epoch":1,"seq":1}\n'
                % (leader.encode(), name.encode(), b"0" * 4000))
            with socket.create_connection(node.address, timeout=2) as sock:
                sock.sendall(line)
        # Handled once the core counted the in-range forgeries (the out-of-range one never decodes).
        wait_until(lambda n=node: n.call(lambda c, now: c.guard.implausible_terms >= 2 or c.term != term, 2),
                   3, f"{name} never handled the forged heartbeats")
    after = {name: hard(node) for name, node in trio.items()}
    assert after == before
    # And the cluster still elects: the leader hands over, someone wins the next term.
    assert trio[leader].transfer_soon(term).result(2) is not None
    wait_until(lambda: any(n.status.leads_with_lease(_now()) and n.status.term > term for n in trio.values()),
               5, "no new leader after the hand-over")


@pytest.mark.parametrize(("content", "cause"), [
    (b'{"term": 3, "voted_for": nu', "is not a Raft state file"),
    (b"\xff\xfe garbage", "is not a Raft state file"),
    (b"[" * 100_000, "is not a Raft state file"),
    (b'["term", 3]', "is not a Raft state file"),
    (b'{"term": %d, "voted_for": null}' % (MAX_TERM + 1), "impossible term"),
    (b'{"term": 1' + b"0" * 5000 + b', "voted_for": null}', "is not a Raft state file"),
    (b'{"term": -1, "voted_for": null}', "impossible term"),
    (b'{"term": "3", "voted_for": null}', "impossible term"),
    (b'{"term": true, "voted_for": null}', "impossible term"),
    (b'{"term": 3.5, "voted_for": null}', "impossible term"),
    (b'{"term": 3, "voted_for": 2}', "impossible vote"),
], ids=["truncated", "not-utf8", "deep", "list", "above-ceiling", "5000-digits", "negative", "string", "bool",
        "float", "vote-int"])
def test_a_bad_state_file_is_refused_at_start_in_one_line(tmp_path: Path, content: bytes, cause: str) -> None:
    from DistributedMutex.backend import Identity
    from DistributedMutex.backends.raft import RaftBackend
    from DistributedMutex.errors import StorageRejectedError

    (tmp_path / "a.json").write_bytes(content)
    backend = RaftBackend(addresses("a", "b", "c"), "a", tmp_path, TIMEOUT)
    try:
        with pytest.raises(StorageRejectedError) as caught:
            backend.acquire(Identity("instance-a"), time.monotonic())
    finally:
        backend.close()
    message = str(caught.value)
    assert f"data_dir={tmp_path}" in message and f"{tmp_path / 'a.json'} " in message and cause in message
    assert "\n" not in message and len(message) < 300 + 2 * len(str(tmp_path)), message
