"""The Raft peer's driver thread, in this process: calls answered once the status shows them and
never run once given up on; renew racing advance_term; a release or advance_term that timed out;
stopping. (The backend's other calls: tests/test_raft_node.py.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import pytest

from DistributedMutex.backend import Held, Lease
from DistributedMutex.backends.raft import RaftBackend
from DistributedMutex.backends.raft.core import HardState, Role
from DistributedMutex.backends.raft.messages import Vote
from DistributedMutex.backends.raft.node import NodeStatus, RaftNode
from DistributedMutex.backends.raft.storage import StateFile
from DistributedMutex.errors import LeaseLostError, StorageUnavailableError
from support.raft_local import INFO, ME, ROOMY, STALL, TIMEOUT, addresses, drained, lease_holder, outcome, stalled

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


def test_a_release_answers_at_once_and_that_term_is_never_taken_again(tmp_path: Path) -> None:
    """release() does not wait for a busy driver (the loop calls it on its own thread): the
    hand-over is queued. Until it runs the snapshot still shows us leading, and the hand-over's
    votes bypass stickiness: a Lease of that term from that snapshot would overlap the next leader's."""
    peers = addresses("a", "b", "c")
    trio = {name: RaftBackend(peers, name, tmp_path, ROOMY) for name in peers}
    try:
        leader, lease = lease_holder(trio)
        backend = trio[leader]
        node = backend._node
        assert node is not None
        assert backend.answers_at_once("release") and backend.answers_at_once("renew")
        with stalled(node):
            asked = time.monotonic()
            backend.release(lease)
            assert time.monotonic() - asked < STALL, "release waited for the stalled driver"
            now = time.monotonic()
            assert node.status.leads_with_lease(now) and node.status.term == lease.term, "the test needs a stale snapshot"
            assert isinstance(backend.acquire(ME, now), Held)
            assert time.monotonic() - now < STALL, "acquire waited for the stalled driver"
            with pytest.raises(LeaseLostError, match="released"):
                backend.renew(lease, now)
        # The queued hand-over runs once the driver is free, so the cluster does not stay without a
        # lease (within lo of its last heartbeat the others stick to it: only a hand-over is this fast).
        _, new = lease_holder({name: b for name, b in trio.items() if name != leader}, timeout=ROOMY[0] / 2)
        assert new.term > lease.term
        assert drained(node).role is not Role.LEADER
    finally:
        for backend in trio.values():
            backend.close()


def test_close_lets_a_queued_hand_over_go_out(tmp_path: Path) -> None:
    """A release that found the driver busy queued its hand-over: closing the backend right after
    (a graceful stop) must not drop it, or the others wait out an election timeout."""
    peers = addresses("a", "b", "c")
    trio = {name: RaftBackend(peers, name, tmp_path, (1.0, 2.0)) for name in peers}
    try:
        leader, lease = lease_holder(trio)
        backend = trio[leader]
        node = backend._node
        assert node is not None
        closing = threading.Thread(target=backend.close, name="close")
        with stalled(node):
            backend.release(lease)
            closing.start()  # waits for the queued hand-over, which runs once the stall ends
        closing.join(5)
        # Well within lo: the others stick to the old leader until then; only a hand-over is this fast.
        _, new = lease_holder({name: b for name, b in trio.items() if name != leader}, timeout=0.5)
    finally:
        for backend in trio.values():
            backend.close()
    assert new.term == lease.term + 1

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
