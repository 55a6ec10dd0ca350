"""The ZooKeeper election backend against a real ZooKeeper server (tests/support/services.py).

What each test proves:

    the line              the lowest znode leads; every other contender watches exactly the znode
                          just below its own (the server's wchc/wchp say so), the one next in line
                          the term base too; a deletion wakes only the contender behind it
    standby lease         the next in line acts on a proof of its session sent before the leader
                          left (no round trip after it); not when the term base moved meanwhile
                          (also when that change and the leader's going race on kazoo's two
                          threads), nor after a suspension, nor once the proof aged past the
                          acting window before the loop acted; a takeover that was never
                          answered fails the first renewal, not a later leadership's
    read_leader           works from a process that does not contend, and makes no znode
    advance_term          raises the term under the leader's znode; the next leader's is higher
    session timeout       the one the server granted is the lease, and a lower one is logged; one
                          so much lower that the loop could not renew in time stops the program
                          with one line (docs/bad-input.md); the setting is 2..40 s
    renew is a write      it commits a transaction (the server's zxid moves), which the ZooKeeper
                          leader checks the session for; a renewal after our znode went fails
    errors                unreachable: one line naming the hosts argument, within the call timeout,
                          and the loop is woken when the server comes; refused by an ACL: rejected

Handovers, a leader cut off, an ensemble: tests/test_zookeeper_failover.py.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from queue import Queue

import pytest
from kazoo.client import KazooClient, KazooState
from kazoo.security import make_digest_acl

from distributed_mutex_demo.backend_settings import ZooKeeperSettings
from DistributedMutex.backend import ElectionBackend, Held, Identity, Lease
from DistributedMutex.backends.zookeeper.backend import ZooKeeperBackend
from DistributedMutex.backends.zookeeper.session import KAZOO_VERSIONS
from DistributedMutex.errors import ConfigurationError, LeaseLostError, StorageRejectedError, StorageUnavailableError
from harness.fake_openweather import FakeOpenWeather
from harness.processes import Instance
from harness.services import ZooKeeperServer
from harness.tcpproxy import TcpProxy
from support.bad_input import assert_stops_with
from support.zk_inspect import inspecting, line_of

log = logging.getLogger(__name__)

SESSION = 4.0  # seconds; the test server's tick is 0.5 s, so it grants 1 to 10 s as asked


@pytest.fixture
def election(zookeeper_server: ZooKeeperServer) -> str:
    """A fresh election path per test: tests share the server, never a line of contenders."""
    return f"/zk-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make(zookeeper_server: ZooKeeperServer, election: str) -> Iterator[Callable[..., ZooKeeperBackend]]:
    """Backends on the test's path (or ``hosts``/``path`` given); all closed after the test."""
    made: list[ZooKeeperBackend] = []

    def build(hosts: str | None = None, path: str | None = None, **options: float) -> ZooKeeperBackend:
        options.setdefault("session_timeout", SESSION)
        backend = ZooKeeperBackend(hosts or zookeeper_server.hosts, path or election, **options)
        made.append(backend)
        return backend

    yield build
    for backend in made:
        backend.close()


@pytest.fixture
def inspector(zookeeper_server: ZooKeeperServer) -> Iterator[KazooClient]:
    """A plain kazoo client of the test's own, to look at the znodes as they are."""
    with inspecting(zookeeper_server.hosts) as client:
        yield client


class Wakes:
    """A backend's wake() calls, counted, with an event to wait on."""

    def __init__(self) -> None:
        self.count = 0
        self.event = threading.Event()

    def __call__(self) -> None:
        self.count += 1
        self.event.set()

    def wait(self, timeout: float, what: str) -> None:
        assert self.event.wait(timeout), f"{what}: not woken within {timeout:g} s"


def watching(backend: ZooKeeperBackend) -> Wakes:
    wakes = Wakes()
    backend.watch(wakes)
    return wakes


# -- the settings ------------------------------------------------------------------------------

@pytest.mark.parametrize("seconds", [1.5, 41.0, 100.0, 200.0])
def test_a_session_timeout_outside_2_to_40_s_is_refused_by_the_settings_too(seconds: float) -> None:
    # Above 40 s a server with the default tick grants 40 s, and the timing derived from the
    # setting would renew too seldom for it (100 s asked: it steps down before its first renewal).
    with pytest.raises(ConfigurationError) as raised:
        ZooKeeperSettings("127.0.0.1:2181", "/election", seconds)
    assert str(raised.value) == ("ZOOKEEPER_SESSION_TIMEOUT: must be from 2 to 40 seconds (ZooKeeper grants 2 to 20 "
                                 f"of its ticks: 4 to 40 s at its default tickTime of 2 s), got {seconds:g}")
    for allowed in (2.0, 40.0):
        assert ZooKeeperSettings("127.0.0.1:2181", "/election", allowed).timing().lease_duration == allowed


def test_a_process_with_the_zookeeper_backend_loads_kazoo_and_nothing_else_it_does_not_need() -> None:
    """Memory per process (issue 14): no other backend's SDK, and not importlib.metadata (email,
    zipfile, csv: a few MiB), which only the error naming kazoo's version needs."""
    script = ("import sys; from DistributedMutex.backends.zookeeper import ZooKeeperBackend; "
              "print(' '.join(sorted({m.split('.')[0] for m in sys.modules} | set(sys.modules))))")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")})
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert "kazoo" in loaded
    unneeded = {"azure", "requests", "cryptography", "prometheus_client", "importlib.metadata", "email",
                "distributed_mutex_demo"} & loaded
    assert not unneeded, f"importing the ZooKeeper backend loaded {sorted(unneeded)}"


# -- the line of contenders --------------------------------------------------------------------

def test_the_lowest_leads_and_each_contender_watches_only_the_znode_below(
        make: Callable[..., ZooKeeperBackend], zookeeper_server: ZooKeeperServer, inspector: KazooClient,
        election: str) -> None:
    names = ("a", "b", "c", "d")
    backends = {name: make() for name in names}
    wakes = {name: watching(backend) for name, backend in backends.items()}
    answers = {name: backends[name].acquire(Identity(name), time.monotonic()) for name in names}

    lease = answers["a"]
    assert isinstance(lease, Lease) and lease.duration == SESSION
    for name in ("b", "c", "d"):
        held = answers[name]
        assert isinstance(held, Held) and held.leader is not None
        assert (held.leader.instance_id, held.leader.term, held.leader.lease_state) == ("a", lease.term, "leased")
    line = line_of(inspector, election)
    assert [who for _, who in line] == list(names)
    znode = dict((who, path) for path, who in line)
    assert znode["a"].endswith(lease.token)

    # The server's own word: each waiting contender's session watches exactly one path, the znode
    # just below its own (and the one next in line the term base: standby.py); the leader's watches
    # nothing; and each znode has at most one watcher.
    by_session = zookeeper_server.watches_by_session()
    session = {name: backend.session_id for name, backend in backends.items()}
    term = f"{election}-term"
    assert {name: by_session.get(session[name], set()) for name in names} == {
        "a": set(), "b": {znode["a"], term}, "c": {znode["b"]}, "d": {znode["c"]}}
    assert zookeeper_server.watchers_by_path() == {
        znode["a"]: {session["b"]}, znode["b"]: {session["c"]}, znode["c"]: {session["d"]}, term: {session["b"]}}

    # Each waiting contender is told that its answer is watched: the loop need not ask again.
    assert all(isinstance(answers[name], Held) and answers[name].watched for name in ("b", "c", "d"))

    # The leader leaves: only the contender behind it is woken, and it leads with a higher term,
    # in one request: it knows it is the lowest now (nobody can join below), so it sends only the
    # transaction that records its leadership, no listing (the server's per-connection count).
    sent_before = zookeeper_server.requests_from(session["b"])
    backends["a"].release(lease)
    wakes["b"].wait(1.0, "b, behind the released leader")
    successor = backends["b"].acquire(Identity("b"), time.monotonic())
    assert isinstance(successor, Lease) and successor.term > lease.term
    # (a ping or a standby proof may fall in between: at most one, each comes about once a second)
    assert zookeeper_server.requests_from(session["b"]) - sent_before <= 2, "the takeover took more than one request"
    # c, now just behind the new leader, is woken once it records its leadership (to read who
    # leads); d, behind c, is not.
    wakes["c"].wait(1.0, "c, behind the new leader")
    assert wakes["d"].count == 0, "a contender not behind the leader was woken"

    # One in the middle leaves: the one behind it is woken and watches the next lower one.
    held = backends["c"].acquire(Identity("c"), time.monotonic())
    assert isinstance(held, Held)
    backends["c"].close()
    wakes["d"].wait(1.0, "d, behind c")
    assert isinstance(backends["d"].acquire(Identity("d"), time.monotonic()), Held)
    assert zookeeper_server.watches_by_session().get(session["d"]) == {znode["b"], term}
    # (b's watch on the base, from when it was next in line, stays until the base next moves)
    assert zookeeper_server.watchers_by_path() == {znode["b"]: {session["d"]}, term: {session["b"], session["d"]}}


def leader_and_proven_heir(leader: ZooKeeperBackend, heir: ZooKeeperBackend) -> tuple[Lease, Wakes]:
    """``leader`` leads; ``heir``, next in line, watches it and holds a standby proof."""
    lease = leader.acquire(Identity("leader"), time.monotonic())
    assert isinstance(lease, Lease)
    wakes = watching(heir)
    assert isinstance(heir.acquire(Identity("heir"), time.monotonic()), Held)
    proven(heir)
    return lease, wakes


def proven(backend: ZooKeeperBackend) -> None:
    """Until the backend, next in line, holds a standby proof (standby.py): its first is sent at once."""
    deadline = time.monotonic() + 3.0
    while backend._standby._proof is None:
        assert time.monotonic() < deadline, "the contender next in line sent no standby proof within 3 s"
        time.sleep(0.01)


def test_the_next_in_line_acts_on_a_standby_lease_proven_before_the_leader_left(
        make: Callable[..., ZooKeeperBackend]) -> None:
    leader, heir, reader = make(), make(), make()
    lease, wakes = leader_and_proven_heir(leader, heir)

    released = time.monotonic()
    leader.release(lease)
    wakes.wait(1.0, "the heir")
    successor = heir.acquire(Identity("heir"), time.monotonic())
    assert isinstance(successor, Lease) and successor.term > lease.term
    # Its lease counts from a write sent before the leader left: nothing waited for after it.
    assert successor.sent_at < released, "the heir waited for a round trip after the leader's znode went"
    assert successor.sent_at + successor.duration > time.monotonic() + 1.0
    # Its takeover's transaction went all the same: the others read it as the leader, with its term,
    # and its first renewal (which checks that transaction) holds.
    record = reader.read_leader()
    assert record is not None and (record.instance_id, record.term) == ("heir", successor.term)
    assert record.acquired_at is not None
    assert heir.renew(successor, time.monotonic()).term == successor.term


def test_no_standby_lease_when_the_term_base_moved_after_it_was_read(
        make: Callable[..., ZooKeeperBackend]) -> None:
    """The heir computes its term from the base it read; a leader's advance_term since then is
    told by the base's watch, and the heir then waits for its transaction, which reads the base again."""
    leader, heir = make(), make()
    lease, wakes = leader_and_proven_heir(leader, heir)
    advanced = leader.advance_term(lease, Identity("leader"), lease.term + 100)

    released = time.monotonic()
    leader.release(advanced)
    wakes.wait(1.0, "the heir")
    successor = heir.acquire(Identity("heir"), time.monotonic())
    assert isinstance(successor, Lease) and successor.term > advanced.term
    assert successor.sent_at >= released, "acted on the standby lease over a base that had moved"
    assert heir.renew(successor, time.monotonic()).term == successor.term


class Stall:
    """Holds one of a kazoo client's worker threads (the watch thread runs the watch events in
    order, the completion thread the answers' callbacks) until released: a real interleaving of the
    two, forced."""

    def __init__(self, work: Queue[Callable[[], None]]) -> None:
        self.started, self.released = threading.Event(), threading.Event()
        work.put(self._hold)
        assert self.started.wait(5.0) or work.qsize() > 1, "the kazoo worker thread did not come within 5 s"

    def _hold(self) -> None:
        self.started.set()
        self.released.wait(10.0)


def until(condition: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what}: not within {timeout:g} s"
        time.sleep(0.005)


def drained(work: Queue[Callable[[], None]], what: str) -> None:
    """Until everything queued so far on a kazoo worker thread has run."""
    done = threading.Event()
    work.put(done.set)
    assert done.wait(5.0), f"{what}: not run within 5 s"


def test_a_leader_gone_before_the_watch_was_rearmed_is_acted_on_behind_the_term_base_told_before(
        make: Callable[..., ZooKeeperBackend], inspector: KazooClient, election: str) -> None:
    """The leader writing its data fires the heir's watch, which re-arms it with a read. The leader
    raises the term base and leaves before that read: the server tells the base's change, then
    answers the read NoNode. The answer's callback runs on kazoo's completion thread, the base's
    event on its watch thread: held here behind a stall, it must still count before the takeover."""
    leader, heir = make(), make()
    lease = leader.acquire(Identity("leader"), time.monotonic())
    assert isinstance(lease, Lease)
    assert isinstance(heir.acquire(Identity("heir"), time.monotonic()), Held)
    proven(heir)
    events = heir._client.handler.callback_queue
    first = Stall(events)
    znode = f"{election}/{lease.token}"
    inspector.set(znode, inspector.get(znode)[0])  # as a leader leading again writes its data: CHANGED
    until(lambda: events.qsize() >= 1, "the heir told of the change")
    second = Stall(events)  # between that event and the base's
    advanced = leader.advance_term(lease, Identity("leader"), lease.term + 100)
    leader.release(advanced)
    first.released.set()  # the watch is re-armed with a read: answered NoNode
    until(lambda: heir._watching is None, "the re-armed read's answer")
    drained(heir._client.handler.completion_queue, "the answer's callback")
    second.released.set()
    drained(events, "the heir's watch events")

    successor = heir.acquire(Identity("heir"), time.monotonic())
    assert isinstance(successor, Lease)
    assert successor.term > advanced.term, "the heir took over with the term base from before it moved"
    assert heir.renew(successor, time.monotonic()).term == successor.term


def test_a_takeover_told_before_a_suspension_is_not_acted_on_with_the_proof_from_before_it(
        proxy: TcpProxy, make: Callable[..., ZooKeeperBackend]) -> None:
    leader, heir = make(), make(hosts=f"127.0.0.1:{proxy.port}")
    lease, wakes = leader_and_proven_heir(leader, heir)
    wakes.event.clear()
    leader.release(lease)
    wakes.wait(1.0, "the heir")
    wakes.event.clear()
    suspended = time.monotonic()
    proxy.down()
    wakes.wait(1.0, "the suspension")
    wakes.event.clear()
    proxy.up()  # within the session timeout: the same session, the same znode
    wakes.wait(3.0, "the reconnection")

    successor = heir.acquire(Identity("heir"), time.monotonic())
    assert isinstance(successor, Lease) and successor.term > lease.term
    assert successor.sent_at >= suspended, "acted on a standby proof sent before the suspension"
    assert heir.renew(successor, time.monotonic()).term == successor.term


def test_a_standby_proof_that_aged_past_the_acting_window_before_the_loop_acted_is_not_the_lease(
        make: Callable[..., ZooKeeperBackend]) -> None:
    """Fresh when the watch fired, stale when the loop's acquire ran (a loop that was slow to run
    it): its lease would leave no renewal within its acting window. 2 s sessions: it ages in 1 s."""
    leader, heir = make(session_timeout=2.0), make(session_timeout=2.0)
    lease, wakes = leader_and_proven_heir(leader, heir)
    wakes.event.clear()
    released = time.monotonic()
    leader.release(lease)
    wakes.wait(1.0, "the heir")
    told = heir._heir
    assert told is not None and told.proven_mono is not None, "no fresh proof when the watch fired"
    proof = told.proven_mono
    # The oldest proof acted on: the granted session timeout less the safety margin and a renewal.
    oldest = 2.0 - max(0.5, 2.0 / 5) - (2.0 / 3 - 0.2)
    until(lambda: time.monotonic() - proof > oldest, "the proof aging", timeout=3.0)

    successor = heir.acquire(Identity("heir"), time.monotonic())
    assert isinstance(successor, Lease) and successor.term > lease.term
    assert successor.sent_at >= released, "acted on a standby proof too old to renew in time"


def unanswered_takeover(proxy: TcpProxy, make: Callable[..., ZooKeeperBackend]) -> tuple[ZooKeeperBackend, Wakes, Lease]:
    """A heir (through ``proxy``, blackholed on return) on its standby lease, its takeover's
    transaction sent as the deletion's event ran and never answered."""
    leader, heir = make(), make(hosts=f"127.0.0.1:{proxy.port}", call_timeout=0.5)
    lease, wakes = leader_and_proven_heir(leader, heir)
    wakes.event.clear()
    events = heir._client.handler.callback_queue
    stall = Stall(events)
    leader.release(lease)
    until(lambda: events.qsize() >= 1, "the heir told of the deletion")
    proxy.blackhole()
    stall.released.set()
    wakes.wait(1.0, "the heir")
    successor = heir.acquire(Identity("heir"), time.monotonic())
    assert isinstance(successor, Lease), "not on the standby lease"
    return heir, wakes, successor


def test_a_takeover_that_was_never_answered_fails_the_first_renewal(
        proxy: TcpProxy, make: Callable[..., ZooKeeperBackend]) -> None:
    """Acted on before its answer (the standby lease), the takeover is checked by the first
    renewal; no answer within the call timeout leaves the term unconfirmed: the lease is lost, not
    retried as if the takeover had held (StorageUnavailableError would be retried unchecked)."""
    try:
        heir, _, successor = unanswered_takeover(proxy, make)
        with pytest.raises(LeaseLostError, match="takeover"):
            heir.renew(successor, time.monotonic())
    finally:
        proxy.heal()


def test_a_leadership_taken_again_after_a_suspension_owes_nothing_to_the_takeover_before_it(
        proxy: TcpProxy, make: Callable[..., ZooKeeperBackend]) -> None:
    """The connection breaks before the first renewal: that leadership ends (suspended), and the
    next acquire leads again with a transaction it waited for. The earlier takeover's lost answer
    is no reason to fail the new lease."""
    heir, wakes, successor = unanswered_takeover(proxy, make)
    wakes.event.clear()
    proxy.heal()  # the connection closed: suspended, then the same session again
    wakes.wait(1.0, "the suspension")
    until(lambda: heir._client.state == KazooState.CONNECTED, "the reconnection", timeout=3.0)
    again = heir.acquire(Identity("heir"), time.monotonic())
    assert isinstance(again, Lease) and again.token == successor.token and again.term > successor.term
    assert heir.renew(again, time.monotonic()).term == again.term


def test_read_leader_from_a_process_that_does_not_contend(
        make: Callable[..., ZooKeeperBackend], inspector: KazooClient, election: str) -> None:
    reader = make()
    assert isinstance(reader, ElectionBackend)
    assert reader.read_leader() is None  # nobody ever contended here

    leader = make()
    lease = leader.acquire(Identity("leader-1"), time.monotonic())
    assert isinstance(lease, Lease)
    record = reader.read_leader()
    assert record is not None and record.is_held
    assert (record.instance_id, record.term, record.pid) == ("leader-1", lease.term, Identity("x").pid)
    assert record.acquired_at is not None
    assert len(inspector.get_children(election)) == 1, "read_leader made a znode"

    leader.release(lease)
    record = reader.read_leader()
    assert record is not None and not record.is_held and record.lease_state == "available"
    assert record.instance_id is None


def test_advance_term_raises_it_and_the_next_leader_is_higher_still(
        make: Callable[..., ZooKeeperBackend], election: str, inspector: KazooClient) -> None:
    first, second, reader = make(), make(), make()
    lease = first.acquire(Identity("first"), time.monotonic())
    assert isinstance(lease, Lease)
    assert isinstance(second.acquire(Identity("second"), time.monotonic()), Held)

    assert first.advance_term(lease, Identity("first"), lease.term - 1 if lease.term > 1 else 1).term == lease.term
    advanced = first.advance_term(lease, Identity("first"), lease.term + 100)
    assert advanced.term == lease.term + 100
    assert int(inspector.get(f"{election}-term")[0]) > 0  # the base, persistent beside the path
    record = reader.read_leader()
    assert record is not None and record.term == advanced.term
    assert first.renew(advanced, time.monotonic()).token == lease.token

    first.release(advanced)
    with pytest.raises(LeaseLostError):
        first.advance_term(advanced, Identity("first"), advanced.term + 5)  # its znode is gone
    successor = second.acquire(Identity("second"), time.monotonic())
    assert isinstance(successor, Lease) and successor.term > advanced.term


def test_the_granted_session_timeout_is_the_lease_and_a_lower_one_is_logged(
        make: Callable[..., ZooKeeperBackend], zookeeper_server: ZooKeeperServer,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="DistributedMutex")
    most = 20 * zookeeper_server.tick  # what the server grants at most
    # 1.6 x: the timing derived from the asked timeout still renews twice within the granted lease
    # (margin + half the acting window = 0.6 x asked = 0.96 x granted).
    asked = most * 1.6
    backend = make(session_timeout=asked)
    lease = backend.acquire(Identity("greedy"), time.monotonic())
    assert isinstance(lease, Lease)
    assert lease.duration == most == backend.session_timeout
    assert backend.renew(lease, time.monotonic()).duration == most
    # So is the oldest standby proof acted on: one renewal (half the 6.8 s acting window here) before
    # the granted lease's window ends, not two renew intervals of the timing asked for (10.3 s).
    window = most - asked / 5
    assert backend._standby.fresh() == pytest.approx(window / 2)
    warnings = [r.getMessage() for r in caplog.records if "granted a session timeout" in r.getMessage()]
    assert warnings == [f"ZooKeeper granted a session timeout of {most:g} s, not the {asked:g} s asked for "
                        f"(session_timeout; the server allows 2 to 20 ticks): leases last {most:g} s"]


def test_a_granted_session_timeout_too_short_for_the_timing_is_rejected_in_one_line(
        make: Callable[..., ZooKeeperBackend], zookeeper_server: ZooKeeperServer, inspector: KazooClient,
        election: str) -> None:
    most = 20 * zookeeper_server.tick
    # 1.7 x: margin + half the acting window of the asked timing = 1.02 x what is granted. The loop
    # would act on a lease it cannot renew in time: refused for good, before joining the line.
    backend = make(session_timeout=most * 1.7)
    with pytest.raises(StorageRejectedError) as raised:
        backend.acquire(Identity("greedy"), time.monotonic())
    assert str(raised.value) == (
        f"ZooKeeper at {zookeeper_server.hosts} granted a session timeout of {most:g} s, far less than the "
        f"{most * 1.7:g} s asked for: a leader could not renew in time; set session_timeout to at most "
        f"{most:g}")
    assert inspector.exists(election) is None or inspector.get_children(election) == [], "it joined the line"
    # What the message advises works.
    assert isinstance(make(session_timeout=most).acquire(Identity("advised"), time.monotonic()), Lease)


def test_a_kazoo_that_does_not_log_the_granted_timeout_is_refused_naming_the_versions_that_do(
        make: Callable[..., ZooKeeperBackend], inspector: KazooClient, election: str) -> None:
    """The granted timeout is read off kazoo's connection log line, which is not an API: a kazoo
    that writes it otherwise is refused in the library's terms (the extra and its version range)."""
    backend = make()
    # As with a kazoo whose connection log has changed: the line is never recognised.
    backend._session._kazoo_log._granted = lambda milliseconds: None
    with pytest.raises(StorageRejectedError) as raised:
        backend.acquire(Identity("x"), time.monotonic())
    assert str(raised.value) == (
        f"cannot tell which session timeout ZooKeeper granted: it is read from kazoo's connection log as "
        f"kazoo>=2.10,<2.12 write it, and kazoo {metadata.version('kazoo')} is installed (the extra zookeeper "
        f"installs a version that fits: pip install 'distributed-mutex[zookeeper]')")
    assert inspector.exists(election) is None or inspector.get_children(election) == [], "it joined the line"


def test_the_kazoo_versions_named_are_those_the_extra_admits() -> None:
    # Read with a pattern, not tomllib: that is Python 3.11's, and the library supports 3.10.
    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    extra = re.search(r"^zookeeper = \[(.*?)^\]", pyproject, re.MULTILINE | re.DOTALL)
    assert extra is not None, "no extra zookeeper in pyproject.toml"
    assert re.findall(r'^\s*"([^"]+)"', extra.group(1), re.MULTILINE) == [KAZOO_VERSIONS]


def test_a_session_timeout_the_server_cuts_short_stops_the_program(
        zookeeper_server: ZooKeeperServer, weather_server: FakeOpenWeather, election: str, tmp_path: Path) -> None:
    most = 20 * zookeeper_server.tick
    env = {"ELECTION_BACKEND": "zookeeper", "ZOOKEEPER_HOSTS": zookeeper_server.hosts, "ZOOKEEPER_PATH": election,
           "ZOOKEEPER_SESSION_TIMEOUT": f"{most * 3:g}", "OPENWEATHER_API_KEY": weather_server.api_key,
           "OPENWEATHER_URL": weather_server.url, "SQLITE_PATH": str(tmp_path / "weather.sqlite3"), "LOG_LEVEL": "INFO"}
    instance = Instance("cut-short", env, tmp_path)
    try:
        assert_stops_with(instance, "zk-session-timeout-not-granted", timeout=20, hosts=zookeeper_server.hosts,
                          granted=f"{most:g}", asked=f"{most * 3:g}")
    finally:
        instance.stop()


def test_renew_is_a_write_the_server_commits_and_fails_once_our_znode_is_gone(
        make: Callable[..., ZooKeeperBackend], zookeeper_server: ZooKeeperServer, inspector: KazooClient,
        election: str) -> None:
    """A read would be answered by whichever server we are connected to, from its own copy; a
    write goes to the ZooKeeper leader, which checks the session (the ensemble test below shows
    why that matters). Every write is a transaction with a zxid of its own; reads and pings have none."""
    backend = make()
    lease = backend.acquire(Identity("writer"), time.monotonic())
    assert isinstance(lease, Lease)
    znode = f"{election}/{lease.token}"
    stat = inspector.exists(znode)
    before = zookeeper_server.zxid()
    for _ in range(3):
        lease = backend.renew(lease, time.monotonic())
    assert zookeeper_server.zxid() - before >= 3, "renew did not write (a follower would answer it alone)"
    after = inspector.exists(znode)
    assert (after.version, after.mzxid) == (stat.version, stat.mzxid), "renew changed our znode"

    inspector.delete(znode)  # as if the ZooKeeper leader had expired our session
    with pytest.raises(LeaseLostError, match="is gone"):
        backend.renew(lease, time.monotonic())


def test_a_leader_whose_session_survived_a_suspension_leads_again_with_a_new_term(
        make: Callable[..., ZooKeeperBackend], zookeeper_server: ZooKeeperServer, proxy: TcpProxy) -> None:
    leader, other = make(hosts=f"127.0.0.1:{proxy.port}"), make()
    wakes = watching(leader)
    lease = leader.acquire(Identity("leader"), time.monotonic())
    assert isinstance(lease, Lease)
    assert isinstance(other.acquire(Identity("other"), time.monotonic()), Held)

    proxy.down()  # reset: SUSPENDED at once
    wakes.wait(1.0, "the suspension")
    with pytest.raises(LeaseLostError, match="suspended"):
        leader.renew(lease, time.monotonic())
    wakes.event.clear()
    proxy.up()  # back well within the session timeout: the same session, the same znode
    wakes.wait(3.0, "the reconnection")
    again = leader.acquire(Identity("leader"), time.monotonic())
    assert isinstance(again, Lease) and again.token == lease.token
    assert again.term > lease.term, "a second leadership with the same term"
    seen = other.acquire(Identity("other"), time.monotonic())
    assert isinstance(seen, Held) and seen.leader is not None and seen.leader.term == again.term


# -- errors --------------------------------------------------------------------------------------

def test_an_unreachable_server_is_one_line_then_the_loop_is_woken_when_it_answers(
        make: Callable[..., ZooKeeperBackend], zookeeper_server: ZooKeeperServer) -> None:
    proxy = TcpProxy(zookeeper_server.port).start()
    proxy.down()  # nothing listens: connections refused
    try:
        backend = make(hosts=f"127.0.0.1:{proxy.port}", call_timeout=0.5)
        wakes = watching(backend)
        started = time.monotonic()
        with pytest.raises(StorageUnavailableError) as raised:
            backend.acquire(Identity("early"), time.monotonic())
        assert time.monotonic() - started < 1.5
        message = str(raised.value)
        assert f"ZooKeeper at 127.0.0.1:{proxy.port} (hosts)" in message and "\n" not in message
        with pytest.raises(StorageUnavailableError):  # still trying in the background: fails at once
            backend.read_leader()

        proxy.up()
        wakes.wait(5.0, "the first connection")  # kazoo retries at most a second apart
        assert isinstance(backend.acquire(Identity("early"), time.monotonic()), Lease)
    finally:
        proxy.close()


def test_a_path_the_acl_refuses_is_rejected_for_good(
        make: Callable[..., ZooKeeperBackend], zookeeper_server: ZooKeeperServer) -> None:
    owner = KazooClient(zookeeper_server.hosts, auth_data=[("digest", "owner:owner-secret")])
    owner.start(timeout=10)
    locked = f"/locked-{uuid.uuid4().hex[:8]}"
    try:
        owner.create(locked, acl=[make_digest_acl("owner", "owner-secret", all=True)])
        with pytest.raises(StorageRejectedError) as raised:
            make(path=f"{locked}/election").acquire(Identity("outsider"), time.monotonic())
        assert f"under {locked}/election (path): NoAuthError" in str(raised.value)
        assert "owner-secret" not in str(raised.value) and "\n" not in str(raised.value)
    finally:
        owner.delete(locked, recursive=True)
        owner.stop()
        owner.close()


@pytest.fixture
def proxy(zookeeper_server: ZooKeeperServer) -> Iterator[TcpProxy]:
    """Between one member and the server. Requested before ``members``: closed after they stop,
    so that the cut-off member can still close its session at the end."""
    proxy = TcpProxy(zookeeper_server.port).start()
    yield proxy
    proxy.close()
