"""The Raft runtime and backend in this process: real sockets, real files, real threads.

Peers here are RaftBackend objects side by side (short election timeouts, so each test takes well
under a second of waiting), or a socket the test reads itself when it plays a peer.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from DistributedMutex.backend import ElectionBackend, Held, Identity, Lease
from DistributedMutex.backends.raft import RaftBackend
from DistributedMutex.backends.raft.arguments import max_heartbeat_interval
from DistributedMutex.backends.raft.core import HardState
from DistributedMutex.backends.raft.messages import Vote, VoteReply, decode, encode
from DistributedMutex.backends.raft.storage import StateFile
from DistributedMutex.backends.raft.transport import query_status
from DistributedMutex.errors import LeaseLostError, StorageRejectedError, StorageUnavailableError
from DistributedMutex.mutex import DistributedMutex, RoleContext
from DistributedMutex.observer import ElectionObserver, StepDownReason
from harness.processes import wait_until
from support.raft_local import ME, TIMEOUT, addresses, lease_holder


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[dict[str, RaftBackend]]:
    peers = addresses("a", "b", "c")
    backends = {name: RaftBackend(peers, name, tmp_path, TIMEOUT) for name in peers}
    yield backends
    for backend in backends.values():
        backend.close()


def test_the_backend_is_an_election_backend(tmp_path: Path) -> None:
    assert isinstance(RaftBackend(addresses("a"), "a", tmp_path, TIMEOUT), ElectionBackend)


def test_one_peer_leads_the_others_name_it(trio: dict[str, RaftBackend]) -> None:
    leader, lease = lease_holder(trio)
    now = time.monotonic()
    assert lease.sent_at <= now < lease.sent_at + lease.duration and lease.duration == TIMEOUT[0]
    for name, backend in trio.items():
        if name != leader:
            # The lease proves a majority heard the leader, not every peer: the third may be a round
            # behind (on a busy machine), so wait for it, bounded.
            held = wait_until(lambda b=backend, n=name: _names_a_leader(b.acquire(Identity(f"instance-{n}"),
                                                                              time.monotonic())),
                              2, f"{name} never named a leader")
            assert (held.leader.instance_id, held.leader.term, held.leader.lease_state) == (
                f"instance-{leader}", lease.term, "leased")


def _names_a_leader(result: object) -> Held | None:
    return result if isinstance(result, Held) and result.leader is not None and result.leader.instance_id else None


def test_renewing_moves_the_lease_on_and_fails_once_leadership_is_gone(trio: dict[str, RaftBackend]) -> None:
    leader, lease = lease_holder(trio)
    renewed = wait_until(lambda: (r := trio[leader].renew(lease, time.monotonic())).sent_at > lease.sent_at and r,
                         2, "the lease never moved on")
    assert renewed.term == lease.term
    trio[leader].release(renewed)
    with pytest.raises(LeaseLostError, match=f"no longer the Raft leader of term {lease.term}"):
        trio[leader].renew(renewed, time.monotonic())


def test_release_hands_leadership_over_at_once(tmp_path: Path) -> None:
    """Well within lo: the others stick to the old leader until then, so no election could be
    this fast; only a hand-over is."""
    peers = addresses("a", "b", "c")
    trio = {name: RaftBackend(peers, name, tmp_path, (1.0, 2.0)) for name in peers}
    try:
        leader, lease = lease_holder(trio)
        released = time.monotonic()
        trio[leader].release(lease)
        others = {name: backend for name, backend in trio.items() if name != leader}
        _, new = lease_holder(others, timeout=0.5)
    finally:
        for backend in trio.values():
            backend.close()
    assert new.term == lease.term + 1
    assert new.sent_at >= released


def test_the_loop_is_woken_when_this_peer_gets_a_lease(tmp_path: Path) -> None:
    backend = RaftBackend(addresses("solo"), "solo", tmp_path, TIMEOUT)
    woken = threading.Event()
    backend.watch(woken.set)
    try:
        assert isinstance(backend.acquire(ME, time.monotonic()), Held)  # just started: it waits lo first
        assert woken.wait(2 * TIMEOUT[1]), "never woken"
        assert isinstance(backend.acquire(ME, time.monotonic()), Lease)
    finally:
        backend.close()


def test_advance_term_moves_the_leadership_and_old_leases_renew_into_it(trio: dict[str, RaftBackend]) -> None:
    leader, lease = lease_holder(trio)
    advanced = trio[leader].advance_term(lease, ME, lease.term + 10)
    assert advanced.term == lease.term + 10 and advanced.sent_at >= lease.sent_at
    renewed = trio[leader].renew(lease, time.monotonic())  # the loop may still hold the old one
    assert renewed.term == advanced.term
    for name, backend in trio.items():
        if name != leader:
            wait_until(lambda b=backend: b.read_leader().term == advanced.term, 2, f"{name} never saw the new term")


def test_read_leader_from_outside_asks_the_peers(trio: dict[str, RaftBackend], tmp_path: Path) -> None:
    leader, lease = lease_holder(trio)
    peers = {name: backend._peers[name] for name, backend in trio.items()}
    outsider = RaftBackend(peers, "a", tmp_path / "elsewhere", TIMEOUT)  # never acquires: never starts
    record = wait_until(lambda: (r := outsider.read_leader()).term == lease.term and r, 2, "nobody named the leader")
    assert (record.instance_id, record.lease_state) == (f"instance-{leader}", "leased")


def test_read_leader_with_no_peer_up_says_who_was_tried(tmp_path: Path) -> None:
    backend = RaftBackend(addresses("a", "b"), "a", tmp_path, TIMEOUT)
    with pytest.raises(StorageUnavailableError, match=r"no Raft peer answered \(a=127\.0\.0\.1:\d+, b=127\.0\.0\.1:\d+\)"):
        backend.read_leader()


def test_a_taken_address_is_one_line_naming_the_arguments(tmp_path: Path) -> None:
    with socket.create_server(("127.0.0.1", 0)) as squatter:
        port = squatter.getsockname()[1]
        backend = RaftBackend({"a": ("127.0.0.1", port)}, "a", tmp_path, TIMEOUT)
        with pytest.raises(StorageRejectedError) as refused:
            backend.acquire(ME, time.monotonic())
    message = str(refused.value)
    assert message == (f"cannot listen on 127.0.0.1:{port}, the address of node_id=a in peers: "
                       "Address already in use")


def test_two_processes_cannot_run_one_peer_on_one_data_directory(tmp_path: Path) -> None:
    first = RaftBackend(addresses("a"), "a", tmp_path, TIMEOUT)
    second = RaftBackend(addresses("a"), "a", tmp_path, TIMEOUT)  # another address, the same state file
    try:
        first.acquire(ME, time.monotonic())
        with pytest.raises(StorageRejectedError, match=r"data_dir=.* another process runs Raft peer a"):
            second.acquire(ME, time.monotonic())
    finally:
        first.close()


def test_a_corrupt_state_file_is_refused_not_reset(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{not json")
    backend = RaftBackend(addresses("a"), "a", tmp_path, TIMEOUT)
    with pytest.raises(StorageRejectedError, match=r"data_dir=.*a\.json is not a Raft state file"):
        backend.acquire(ME, time.monotonic())


def test_a_vote_is_on_disk_before_its_answer_leaves(tmp_path: Path) -> None:
    """The test plays peer b: it asks a for a vote and reads a's state file the moment the answer
    arrives."""
    peers = addresses("a", "b", "c")
    with socket.create_server(peers["b"]) as b_listens:
        backend = RaftBackend(peers, "a", tmp_path, TIMEOUT)
        backend.acquire(ME, time.monotonic())
        try:
            with socket.create_connection(peers["a"]) as to_a:
                # A transfer vote: a just started, and would refuse any other for lo.
                to_a.sendall(encode(Vote("b", "a", 7, transfer=True)))
                b_listens.settimeout(5)
                from_a, _ = b_listens.accept()
                with from_a, from_a.makefile("rb") as lines:
                    from_a.settimeout(5)
                    reply = next(m for m in map(decode, lines) if isinstance(m, VoteReply))
                    on_disk = StateFile(tmp_path, "a").load()
        finally:
            backend.close()
    assert reply == VoteReply("a", "b", 7, True)
    assert on_disk == HardState(7, "b")


def test_anyone_may_ask_for_the_status_in_json(tmp_path: Path) -> None:
    peers = addresses("a", "b")
    backend = RaftBackend(peers, "a", tmp_path, TIMEOUT)
    backend.acquire(ME, time.monotonic())
    try:
        with socket.create_connection(peers["a"], timeout=5) as client, client.makefile("rb") as answers:
            client.sendall(b'{ "type" : "status" }\n')
            status = json.loads(answers.readline())
    finally:
        backend.close()
    assert status.pop("role") in ("follower", "pre-candidate")  # b never answers: a may be asking for votes
    assert status.pop("transport") == {}  # what the listener refused: nothing yet
    assert status.pop("refused") == {"implausible_term": 0, "replayed": 0}  # nor the core's guard
    assert status == {"node": "a", "term": 0, "leader": None, "leader_info": None, "lease_state": "available"}


def test_a_peer_that_sends_garbage_is_dropped_and_the_node_lives_on(tmp_path: Path) -> None:
    peers = addresses("a", "b")
    backend = RaftBackend(peers, "a", tmp_path, TIMEOUT)
    backend.acquire(ME, time.monotonic())
    try:
        with socket.create_connection(peers["a"], timeout=5) as rogue:
            rogue.sendall(b'{"type": "vote", "src": "b", "dst": "a", "term": "many"}\n')
            assert rogue.recv(10) == b"", "the connection should have been closed"
        assert query_status(peers["a"], 2)["node"] == "a"
    finally:
        backend.close()


def test_the_election_loop_moves_a_leadership_to_a_higher_term_without_a_break(tmp_path: Path) -> None:
    """DistributedMutex on three peers: the leader's task asks for a higher term (its store has
    seen one) and keeps acting through the re-campaign, renewals included."""
    peers = addresses("a", "b", "c")
    backends = {name: RaftBackend(peers, name, tmp_path, TIMEOUT) for name in peers}
    timing = backends["a"].default_timing()
    seen: list[tuple[str, int | None]] = []
    mutexes: list[DistributedMutex] = []

    async def lead(ctx: RoleContext) -> None:
        seen.append((ctx.instance_id, ctx.term))
        assert ctx.advance_term is not None and ctx.term is not None
        seen.append((ctx.instance_id, await ctx.advance_term(ctx.term + 40)))
        until = time.monotonic() + 10 * timing.renew_interval
        while time.monotonic() < until:
            assert ctx.is_active(), "stopped acting during or after the re-campaign"
            await asyncio.sleep(timing.renew_interval / 4)
        for mutex in mutexes:
            mutex.stop()

    async def run_all() -> None:
        mutexes.extend(DistributedMutex(lead, backend=backend, identity=Identity(f"instance-{name}"), timing=timing)
                       for name, backend in backends.items())
        await asyncio.wait_for(asyncio.gather(*(m.run_async() for m in mutexes)), timeout=20)

    try:
        asyncio.run(run_all())
    finally:
        for backend in backends.values():
            backend.close()
    (leader, term), (again, advanced) = seen
    assert again == leader and advanced is not None and term is not None and advanced >= term + 40


def test_at_the_longest_heartbeat_interval_accepted_the_leader_keeps_its_lease(tmp_path: Path) -> None:
    """A heartbeat round every max_heartbeat_interval (0.35 s with the default 1 s lease): every
    renewal still finds a lease the loop can act on until the next one, so one leadership lasts,
    with no step-down at the deadline (0.9 s, refused now, stepped down about every second)."""
    election_timeout = (1.0, 2.0)  # the default: a renew interval (0.2 s at this heartbeat) far above a loopback round trip
    heartbeat = max_heartbeat_interval(election_timeout)
    peers = addresses("a", "b", "c")
    backends = {name: RaftBackend(peers, name, tmp_path, election_timeout, heartbeat_interval=heartbeat)
                for name in peers}
    observer = Transitions()

    async def lead(ctx: RoleContext) -> None:
        await asyncio.Event().wait()

    async def run_all() -> None:
        mutexes = [DistributedMutex(lead, backend=backend, identity=Identity(f"instance-{name}"), observer=observer)
                   for name, backend in backends.items()]
        running = asyncio.gather(*(m.run_async() for m in mutexes))
        try:
            await asyncio.wait_for(observer.led.wait(), timeout=10)
            await asyncio.sleep(10 * heartbeat)  # 3.5 s: about 17 renewals
        finally:
            for mutex in mutexes:
                mutex.stop()
            await asyncio.wait_for(running, timeout=10)

    try:
        asyncio.run(run_all())
    finally:
        for backend in backends.values():
            backend.close()
    assert len(observer.became) == 1 and observer.lost == [StepDownReason.SHUTDOWN], (observer.became, observer.lost)


class Transitions(ElectionObserver):
    def __init__(self) -> None:
        self.became: list[int] = []
        self.lost: list[StepDownReason] = []
        self.led = asyncio.Event()

    def became_leader(self, term: int, lease_age: float, lease_duration: float) -> None:
        self.became.append(term)
        self.led.set()

    def lost_leadership(self, term: int, cause: StepDownReason) -> None:
        self.lost.append(cause)
