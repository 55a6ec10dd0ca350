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
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from distributed_mutex_demo.backend_settings import RaftSettings
from DistributedMutex.backend import ElectionBackend, Held, Identity, Lease
from DistributedMutex.backends.raft import RaftBackend
from DistributedMutex.backends.raft.core import HardState, Role
from DistributedMutex.backends.raft.messages import LeaderInfo, Vote, VoteReply, decode, encode
from DistributedMutex.backends.raft.node import NodeStatus, RaftNode
from DistributedMutex.backends.raft.storage import StateFile
from DistributedMutex.backends.raft.transport import query_status
from DistributedMutex.errors import ConfigurationError, LeaseLostError, StorageRejectedError, StorageUnavailableError
from DistributedMutex.mutex import DistributedMutex, RoleContext
from support.processes import wait_until
from support.services import free_port

TIMEOUT = (0.3, 0.6)
# For the tests that hold a leader's driver or its backend on purpose: a lease (lo) that outlasts
# the hold many times over, so that only the behaviour under test can end the leadership.
ROOMY = (0.6, 1.2)
STALL = 0.1  # the backend's call_timeout in those tests: how long it waits for a held driver
ME = Identity("instance-a", "host-a", 4242)
INFO = LeaderInfo("instance-a", "host-a", 4242)


def addresses(*names: str) -> dict[str, tuple[str, int]]:
    return {name: ("127.0.0.1", free_port()) for name in names}


@pytest.fixture
def trio(tmp_path: Path) -> Iterator[dict[str, RaftBackend]]:
    peers = addresses("a", "b", "c")
    backends = {name: RaftBackend(peers, name, tmp_path, TIMEOUT) for name in peers}
    yield backends
    for backend in backends.values():
        backend.close()


def lease_holder(backends: dict[str, RaftBackend], timeout: float = 5.0) -> tuple[str, Lease]:
    """Poll every backend's acquire until one returns a Lease."""
    def holder() -> tuple[str, Lease] | None:
        for name, backend in backends.items():
            result = backend.acquire(Identity(f"instance-{name}"), time.monotonic())
            if isinstance(result, Lease):
                return name, result
        return None
    return wait_until(holder, timeout, "no peer got a lease", interval=0.005)


@contextmanager
def stalled(node: RaftNode) -> Iterator[None]:
    """Hold the peer's driver thread in a call until the block ends: what a slow fsync, swapping
    or a long pause does to it. Everything sent to the peer meanwhile waits in its inbox."""
    inside, go_on = threading.Event(), threading.Event()

    def hold(core: Any, now: float) -> None:
        inside.set()
        go_on.wait(10)

    holder = threading.Thread(target=node.call, args=(hold, 15), name="stall")
    holder.start()
    assert inside.wait(5), "the driver never took the stalling call"
    try:
        yield
    finally:
        go_on.set()
        holder.join(5)


def drained(node: RaftNode) -> NodeStatus:
    """The status once the driver has dealt with everything queued so far (the inbox is FIFO)."""
    node.call(lambda core, now: None, timeout=5)
    return node.status


def outcome(fn: Callable[..., Any], *args: Any) -> Any:
    """What ``fn(*args)`` returned or raised."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - the test looks at it
        return exc


def test_the_backend_is_an_election_backend(tmp_path: Path) -> None:
    assert isinstance(RaftBackend(addresses("a"), "a", tmp_path, TIMEOUT), ElectionBackend)


def test_the_defaults_are_the_documented_ones(tmp_path: Path) -> None:
    """election_timeout (1.0, 2.0) s; data_dir a str or a Path; the timing follows from the minimum."""
    backend = RaftBackend({"a": ("127.0.0.1", 7001), "b": "127.0.0.1:7002"}, "a", str(tmp_path / "state"))
    timing = backend.default_timing()
    assert (timing.lease_duration, timing.renew_interval, timing.acquire_interval, timing.safety_margin) == (
        1.0, 0.2, 0.5, 0.25)
    assert backend.lease_basis == "election_timeout minimum 1 s"


@pytest.mark.parametrize(("arguments", "message"), [
    ({"peers": {}}, "peers: must list the whole cluster as {id: (host, port), ...}, got {}"),
    ({"peers": [("127.0.0.1", 7001)]}, "peers: must list the whole cluster as {id: (host, port), ...}, got list"),
    ({"peers": {"a b": ("127.0.0.1", 7001)}, "node_id": "a b"},
     "peers: 'a b' is not a peer id (1-64 letters, digits or . _ -, starting with a letter or digit)"),
    ({"peers": {"a": ("127.0.0.1", 70001)}}, "peers['a']: '127.0.0.1:70001': the port must be a number from 1 to 65535"),
    ({"peers": {"a": ("127.0.0.1", "7001")}}, "peers: the address of 'a' must be (host, port), got ('127.0.0.1', '7001')"),
    ({"peers": {"a": "127.0.0.1"}}, "peers['a']: '127.0.0.1' has no port: write host:port"),
    ({"peers": {"a": ("127.0.0.1", 7001), "b": ("127.0.0.1", 7001)}}, "peers: gives 127.0.0.1:7001 to two peers"),
    ({"node_id": "d"}, "node_id: 'd' is not one of the ids in peers (a, b, c)"),
    ({"election_timeout": (2.0, 1.0)}, "election_timeout: must be (min, max) seconds with 0.2 <= min < max <= 600 "
                                       "(a range, so that candidates rarely split the vote), got (2, 1)"),
    ({"election_timeout": 1.5}, "election_timeout: must be (min, max) seconds with 0.2 <= min < max <= 600, got 1.5"),
    ({"election_timeout": (0.1, 0.2)}, "election_timeout: must be (min, max) seconds with 0.2 <= min < max <= 600 "
                                       "(a range, so that candidates rarely split the vote), got (0.1, 0.2)"),
    ({"data_dir": "/etc/hostname"}, "data_dir: '/etc/hostname' exists and is not a directory"),
    ({"data_dir": None}, "data_dir: must be a directory path (str or Path) for this peer's term and vote, got None"),
    ({"heartbeat_interval": 1.0}, "heartbeat_interval: must be above 0 and below the minimum election timeout, "
                                  "1 s, got 1.0"),
])
def test_bad_arguments_are_one_line_in_the_library_s_terms(tmp_path: Path, arguments: dict[str, Any],
                                                           message: str) -> None:
    given = {"peers": {"a": ("127.0.0.1", 7001), "b": ("127.0.0.1", 7002), "c": ("127.0.0.1", 7003)},
             "node_id": "a", "data_dir": tmp_path, **arguments}
    with pytest.raises(ConfigurationError) as raised:
        RaftBackend(**given)
    assert str(raised.value) == message
    assert "RAFT_" not in str(raised.value)


def test_a_program_s_own_setting_names_reach_the_messages(tmp_path: Path) -> None:
    names = {"peers": "RAFT_PEERS", "node_id": "RAFT_ID", "data_dir": "RAFT_DATA_DIR"}
    with pytest.raises(ConfigurationError) as raised:
        RaftBackend({"a": ("127.0.0.1", 7001)}, "b", tmp_path, names=names)
    assert str(raised.value) == "RAFT_ID: 'b' is not one of the ids in RAFT_PEERS (a)"


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
                    on_disk = json.loads((tmp_path / "a.json").read_text())
        finally:
            backend.close()
    assert reply == VoteReply("a", "b", 7, True)
    assert on_disk == {"term": 7, "voted_for": "b"}


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


def test_the_state_file_is_replaced_whole(tmp_path: Path) -> None:
    state = StateFile(tmp_path, "a")
    assert state.load() == HardState()
    state.save(HardState(3, "b"))
    state.save(HardState(4, None))
    assert state.load() == HardState(4, None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json"], "no temporary file left behind"


def test_the_election_loop_moves_a_leadership_to_a_higher_term_without_a_break(tmp_path: Path) -> None:
    """DistributedMutex on three peers: the leader's task asks for a higher term (its store has
    seen one) and keeps acting through the re-campaign, renewals included."""
    peers = addresses("a", "b", "c")
    backends = {name: RaftBackend(peers, name, tmp_path, TIMEOUT) for name in peers}
    timing = RaftSettings(peers, "a", tmp_path, TIMEOUT).timing()
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


# -- calls to the driver: answered once the status shows them, never run once given up on --------


def test_a_call_its_caller_gave_up_on_never_runs(tmp_path: Path) -> None:
    """A hand-over or re-campaign run after its caller timed out would act behind its back."""
    node = RaftNode("a", addresses("a", "b", "c"), tmp_path, TIMEOUT, info=INFO)
    node.start()
    ran: list[float] = []
    try:
        with stalled(node), pytest.raises(TimeoutError, match=r"did not get to it within 0\.05 s"):
            node.call(lambda core, now: ran.append(now), timeout=0.05)
        drained(node)
    finally:
        node.stop()
    assert ran == []


def test_a_call_is_answered_only_once_the_status_shows_what_it_did(tmp_path: Path) -> None:
    """A caller reads the status as soon as it has its answer: after a hand-over it must not
    still see itself leading with a lease (the backend would hand that lease out again)."""
    node = RaftNode("solo", addresses("solo"), tmp_path, TIMEOUT, info=INFO)
    node.start()
    try:
        leading = node.wait_until(lambda s: s.role is Role.LEADER, 5)
        assert leading.role is Role.LEADER, "the only peer never led"
        seen: list[Role] = []
        with stalled(node):  # so that the callback below is in place before the answer
            answer = node.submit(lambda core, now: core.transfer_leadership(now))
            # Runs on the driver thread at the very moment the answer is given.
            answer.add_done_callback(lambda _: seen.append(node.status.role))
        answer.result(5)
    finally:
        node.stop()
    assert seen == [Role.FOLLOWER]


# -- renew racing advance_term: one view of the terms and the status ----------------------------


@contextmanager
def first_status_read_held(monkeypatch: pytest.MonkeyPatch, thread: str) -> Iterator[tuple[threading.Event, threading.Event]]:
    """Hold the thread named ``thread`` at its first read of a peer's status (the real one,
    read once let go): the moment a renew has its terms but not yet the status."""
    reading, go_on = threading.Event(), threading.Event()
    status = RaftNode.status.fget
    assert status is not None

    def held(node: RaftNode) -> NodeStatus:
        if threading.current_thread().name == thread and not reading.is_set():
            reading.set()
            go_on.wait(5)
        return status(node)

    monkeypatch.setattr(RaftNode, "status", property(held))
    try:
        yield reading, go_on
    finally:
        go_on.set()


def test_a_renew_that_straddles_advance_term_keeps_the_lease(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """renew has read that the term was not moved, advance_term moves it, renew reads the
    status: leading the new term, which is not the term renew was asked about."""
    peers = addresses("a", "b", "c")
    trio = {name: RaftBackend(peers, name, tmp_path, ROOMY) for name in peers}
    try:
        leader, lease = lease_holder(trio)
        backend = trio[leader]
        with first_status_read_held(monkeypatch, "renewer") as (reading, go_on):
            renewed: list[Any] = []
            renewer = threading.Thread(target=lambda: renewed.append(outcome(backend.renew, lease, time.monotonic())),
                                       name="renewer")
            renewer.start()
            assert reading.wait(5), "renew never read the status"
            advanced = backend.advance_term(lease, ME, lease.term + 5)
            go_on.set()
            renewer.join(5)
    finally:
        for backend in trio.values():
            backend.close()
    assert len(renewed) == 1 and isinstance(renewed[0], Lease), renewed
    assert renewed[0].term == advanced.term


def test_a_renew_that_reads_the_status_of_the_re_campaign_keeps_the_lease(tmp_path: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """renew has read that nothing is re-campaigning, advance_term starts, renew reads the
    status: a candidate. The followers are held so that the campaign lasts while renew looks."""
    peers = addresses("a", "b", "c")
    trio = {name: RaftBackend(peers, name, tmp_path, ROOMY) for name in peers}
    try:
        leader, lease = lease_holder(trio)
        backend = trio[leader]
        node = backend._node
        assert node is not None
        advanced: list[Any] = []
        with first_status_read_held(monkeypatch, "renewer") as (reading, go_on):
            with ExitStack() as followers_held:
                for name, other in trio.items():
                    if name != leader:
                        assert other._node is not None
                        followers_held.enter_context(stalled(other._node))
                renewed: list[Any] = []
                renewer = threading.Thread(target=lambda: renewed.append(outcome(backend.renew, lease, time.monotonic())),
                                           name="renewer")
                renewer.start()
                assert reading.wait(5), "renew never read the status"
                advancer = threading.Thread(target=lambda: advanced.append(outcome(
                    backend.advance_term, lease, ME, lease.term + 5)), name="advancer")
                advancer.start()
                assert node.wait_until(lambda s: s.role is Role.CANDIDATE, 5).role is Role.CANDIDATE
                go_on.set()
                renewer.join(5)
                assert renewed == [lease]  # the lease it had still holds while it campaigns
            advancer.join(5)  # the followers answer now
    finally:
        for backend in trio.values():
            backend.close()
    assert len(advanced) == 1 and isinstance(advanced[0], Lease) and advanced[0].term >= lease.term + 5, advanced


# -- a release or advance_term that timed out ------------------------------------------------------


def test_a_release_that_timed_out_never_lets_that_term_be_taken_again(tmp_path: Path) -> None:
    """The hand-over's votes bypass stickiness: once release() was asked for a term, a Lease of
    it from the snapshot still showing us leading would overlap the next leader's."""
    peers = addresses("a", "b", "c")
    trio = {name: RaftBackend(peers, name, tmp_path, ROOMY) for name in peers}
    try:
        leader, lease = lease_holder(trio)
        backend = trio[leader]
        backend.call_timeout = STALL
        node = backend._node
        assert node is not None
        with stalled(node):
            with pytest.raises(StorageUnavailableError, match="did not get to it"):
                backend.release(lease)
            now = time.monotonic()
            assert node.status.leads_with_lease(now) and node.status.term == lease.term, "the test needs a stale snapshot"
            assert isinstance(backend.acquire(ME, now), Held)
            with pytest.raises(LeaseLostError, match="released"):
                backend.renew(lease, now)
        # The dropped hand-over did not run late: still leading, and still no Lease of that term.
        assert (drained(node).role, node.status.term) == (Role.LEADER, lease.term)
        assert isinstance(backend.acquire(ME, time.monotonic()), Held)
        # ... and that acquire handed over for real, so the cluster does not stay without a lease
        # (within lo of its last heartbeat the others stick to it: only a hand-over is this fast).
        _, new = lease_holder({name: b for name, b in trio.items() if name != leader}, timeout=ROOMY[0] / 2)
        assert new.term > lease.term
    finally:
        for backend in trio.values():
            backend.close()


def test_an_advance_term_that_timed_out_does_not_campaign_later(tmp_path: Path) -> None:
    """Its caller took the failure to mean nothing changed: the lease it holds renews as before."""
    peers = addresses("a", "b", "c")
    trio = {name: RaftBackend(peers, name, tmp_path, ROOMY) for name in peers}
    try:
        leader, lease = lease_holder(trio)
        backend = trio[leader]
        backend.call_timeout = STALL
        node = backend._node
        assert node is not None
        with stalled(node), pytest.raises(StorageUnavailableError, match="did not get to it"):
            backend.advance_term(lease, ME, lease.term + 5)
        assert (drained(node).role, node.status.term) == (Role.LEADER, lease.term)
        assert backend.renew(lease, time.monotonic()).term == lease.term
    finally:
        for backend in trio.values():
            backend.close()


# -- stopping --------------------------------------------------------------------------------------


def test_stop_lets_the_state_go_only_once_the_driver_is_gone_and_saves_nothing_after(tmp_path: Path) -> None:
    """A driver stuck past stop()'s timeout keeps the lock (or a second process could vote with
    the same state), and what it still had queued is never saved."""
    peers = addresses("a", "b", "c")
    node = RaftNode("a", peers, tmp_path, TIMEOUT, info=INFO)
    node.start()
    driver = node._driver
    assert driver is not None
    with stalled(node):
        # What the listener does with a vote request from b (a transfer vote: a just started,
        # and would refuse any other for lo); it waits in the inbox behind the stall.
        node._inbox.put(Vote("b", "a", 6, transfer=True))
        node.stop(timeout=0.1)
        assert driver.is_alive()
        with pytest.raises(OSError, match="another process runs Raft peer a"):
            RaftNode("a", peers, tmp_path, TIMEOUT, info=INFO).start()
    driver.join(5)
    assert not driver.is_alive(), "the driver never exited"
    assert StateFile(tmp_path, "a").load() == HardState(), "a vote was saved after stop()"
    again = RaftNode("a", peers, tmp_path, TIMEOUT, info=INFO)
    again.start()  # the lock went with the driver
    again.stop()
