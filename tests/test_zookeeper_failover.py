"""The ZooKeeper backend under DistributedMutex when leaders go: real server, real processes.

What each test proves:

    handover (processes)  SIGTERM of the leader: the next leads within 1 s; SIGKILL: within the
                          session timeout + 2 s
    cut off (in process)  connection reset: leader work ends within 1 s of SUSPENDED, before the
                          next leader; blackholed until the session expired: no two leaders at
                          once, and after LOST the instance rejoins with a new, higher term
    ensemble              3 servers; the leader's follower cut from the ZooKeeper leader keeps
                          serving reads while the leader expires the session: the cut-off
                          leader stops before the next one leads (a read-only renewal would not)

The timing is each contender's backend's own (ZooKeeperBackend.default_timing()).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kazoo.client import KazooClient

from DistributedMutex.backend import Identity
from DistributedMutex.backends.zookeeper.backend import ZooKeeperBackend
from DistributedMutex.mutex import DistributedMutex, RoleContext
from harness.processes import Instance, wait_until
from harness.services import ZooKeeperServer
from harness.tcpproxy import TcpProxy
from harness.zk_ensemble import ZooKeeperEnsemble
from support.zk_inspect import inspecting, line_of

log = logging.getLogger(__name__)

SESSION = 4.0  # seconds; the test server's tick is 0.5 s, so it grants 1 to 10 s as asked
CONTENDER = Path(__file__).resolve().parent / "support" / "zk_contender.py"


@pytest.fixture
def election(zookeeper_server: ZooKeeperServer) -> str:
    """A fresh election path per test: tests share the server, never a line of contenders."""
    return f"/zk-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def inspector(zookeeper_server: ZooKeeperServer) -> Iterator[KazooClient]:
    """A plain kazoo client of the test's own, to look at the znodes as they are."""
    with inspecting(zookeeper_server.hosts) as client:
        yield client


# -- handovers between real processes -------------------------------------------------------------

@dataclass
class Handovers:
    terms: dict[str, int] = field(default_factory=dict)  # "a", "b", "c": the first, second, third leader's term
    graceful: float = 0.0  # SIGTERM of the leader -> the next one acts (s)
    crash: float = 0.0  # SIGKILL of the leader -> the next one acts (s)
    graceful_exit: int | None = None
    stopped_acting: float = 0.0  # when the SIGTERMed leader's work ended
    graceful_started: float = 0.0  # when the next one's began


def acting(instance: Instance, event: str, timeout: float, after: float = 0.0) -> tuple[int, float]:
    """(term, CLOCK_MONOTONIC) of the child's first ``lead``/``stop`` line at or after ``after``."""
    line = instance.wait_for(rf"^{event} \d+ ", timeout, after=after)
    _, term, at = line.text.split()
    return int(term), float(at)


@pytest.fixture(scope="module")
def handovers(zookeeper_server: ZooKeeperServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Handovers]:
    """Three contender processes: SIGTERM the first leader, then SIGKILL the second."""
    path = f"/zk-handover-{uuid.uuid4().hex[:12]}"
    cwd = tmp_path_factory.mktemp("zk-handover")
    seen = Handovers()
    running: list[Instance] = []

    def start(name: str) -> Instance:
        instance = Instance(name, {}, cwd, args=(zookeeper_server.hosts, path, f"{SESSION:g}"), script=CONTENDER)
        running.append(instance)
        return instance

    try:
        a = start("a")
        seen.terms["a"], _ = acting(a, "lead", 20)
        b, c = start("b"), start("c")
        # Whichever joined first (the lower sequence number) is next in line.
        b, c = sorted((b, c), key=lambda i: i.wait_for(r"joined the election .*-n_(\d+)$", 20).text[-10:])
        sent = a.signal(signal.SIGTERM)
        seen.terms["b"], seen.graceful_started = acting(b, "lead", 10)  # "b": the second leader
        seen.graceful = seen.graceful_started - sent
        _, seen.stopped_acting = acting(a, "stop", 5)
        seen.graceful_exit = a.wait(10)

        sent = b.signal(signal.SIGKILL)
        seen.terms["c"], started = acting(c, "lead", SESSION + 10)  # "c": the third
        seen.crash = started - sent
        log.info("ZooKeeper handover: graceful %.3f s, crash %.3f s (session timeout %g s)",
                 seen.graceful, seen.crash, SESSION)
        yield seen
    finally:
        for instance in running:
            instance.stop()


def test_graceful_stop_hands_over_within_a_second(handovers: Handovers) -> None:
    assert handovers.graceful_exit == 0
    assert handovers.stopped_acting <= handovers.graceful_started, "two leaders acted at once"
    assert handovers.graceful <= 1.0, f"graceful handover took {handovers.graceful:.3f} s"
    assert handovers.terms["a"] < handovers.terms["b"]


def test_a_killed_leader_is_replaced_within_the_session_timeout_and_2_s(handovers: Handovers) -> None:
    assert handovers.crash <= SESSION + 2, f"crash handover took {handovers.crash:.3f} s"
    assert handovers.terms["b"] < handovers.terms["c"]


# -- a leader cut off from ZooKeeper (DistributedMutex in this process) ---------------------------

@dataclass
class Leadership:
    term: int
    started: float
    ended: float | None = None


class Member:
    """DistributedMutex on its own ZooKeeperBackend, in a thread of this process."""

    def __init__(self, name: str, hosts: str, path: str) -> None:
        self.name = name
        self.backend = ZooKeeperBackend(hosts, path, session_timeout=SESSION)
        self.leaderships: list[Leadership] = []
        self.changed = threading.Condition()
        self.mutex = DistributedMutex(self._lead, backend=self.backend, identity=Identity(name))
        self.thread = threading.Thread(target=asyncio.run, args=(self.mutex.run_async(),), name=name, daemon=True)
        self.thread.start()

    async def _lead(self, ctx: RoleContext) -> None:
        assert ctx.term is not None
        leadership = Leadership(ctx.term, time.monotonic())
        with self.changed:
            self.leaderships.append(leadership)
            self.changed.notify_all()
        try:
            await asyncio.Event().wait()
        finally:
            with self.changed:
                leadership.ended = time.monotonic()
                self.changed.notify_all()

    def wait(self, predicate: Callable[[], object], timeout: float, what: str) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, timeout), f"{self.name}: {what} within {timeout:g} s"

    def leads(self, count: int = 1) -> Callable[[], bool]:
        return lambda: len(self.leaderships) >= count and self.leaderships[count - 1].ended is None

    def stop(self) -> None:
        if self.thread.is_alive():
            self.mutex.stop()
            self.thread.join(10)
        self.backend.close()


class LogTimes(logging.Handler):
    """When (CLOCK_MONOTONIC) each log line of the package was written."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.lines: list[tuple[float, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((time.monotonic(), record.getMessage()))

    def first(self, pattern: str) -> tuple[float, str] | None:
        return next(((at, text) for at, text in self.lines if re.search(pattern, text)), None)


@pytest.fixture
def log_times() -> Iterator[LogTimes]:
    handler = LogTimes()
    package = logging.getLogger("DistributedMutex")
    level = package.level
    package.setLevel(logging.INFO)
    package.addHandler(handler)
    yield handler
    package.removeHandler(handler)
    package.setLevel(level)


@pytest.fixture
def proxy(zookeeper_server: ZooKeeperServer) -> Iterator[TcpProxy]:
    """Between one member and the server. Requested before ``members``: closed after they stop,
    so that the cut-off member can still close its session at the end."""
    proxy = TcpProxy(zookeeper_server.port).start()
    yield proxy
    proxy.close()


@pytest.fixture
def members(zookeeper_server: ZooKeeperServer, election: str) -> Iterator[Callable[[str, str], Member]]:
    started: list[Member] = []

    def start(name: str, hosts: str) -> Member:
        member = Member(name, hosts, election)
        started.append(member)
        return member

    yield start
    for member in started:
        member.stop()


def test_suspension_stops_leader_work_at_once(
        zookeeper_server: ZooKeeperServer, proxy: TcpProxy, members: Callable[[str, str], Member],
        log_times: LogTimes) -> None:
    cut_off = members("cut-off", f"127.0.0.1:{proxy.port}")
    cut_off.wait(cut_off.leads(), 10, "leads")
    other = members("other", zookeeper_server.hosts)
    wait_until(lambda: other.mutex.leader is not None and other.mutex.leader.instance_id == "cut-off", 10,
               "the other member never saw the first one lead")

    proxy.down()  # the connection is reset: kazoo suspends at once, the session lives on
    other.wait(other.leads(), SESSION + 3, "leads after the cut-off one's session expired")
    suspended = log_times.first("ZooKeeper connection suspended")
    assert suspended is not None
    first = cut_off.leaderships[0]
    assert first.ended is not None
    assert first.ended - suspended[0] <= 1.0, f"leader work ended {first.ended - suspended[0]:.2f} s after SUSPENDED"
    # Well before anyone else could lead: the session outlives the cut by about its timeout.
    assert other.leaderships[0].started - first.ended >= 2.0, "the cut-off leader stopped only just in time"
    step_down = log_times.first("lost leadership: ")
    assert step_down is not None and "suspended" in step_down[1], step_down


def test_a_lost_session_rejoins_with_a_new_higher_term(
        zookeeper_server: ZooKeeperServer, proxy: TcpProxy, members: Callable[[str, str], Member],
        log_times: LogTimes, inspector: KazooClient, election: str) -> None:
    cut_off = members("cut-off", f"127.0.0.1:{proxy.port}")
    cut_off.wait(cut_off.leads(), 10, "leads")
    other = members("other", zookeeper_server.hosts)
    wait_until(lambda: other.mutex.leader is not None and other.mutex.leader.instance_id == "cut-off", 10,
               "the other member never saw the first one lead")

    proxy.blackhole()  # bytes vanish: no answer, no reset; the server expires the session
    other.wait(other.leads(), SESSION + 3, "leads after the cut-off one's session expired")
    first, successor = cut_off.leaderships[0], other.leaderships[0]
    assert first.ended is not None and first.ended < successor.started, "two leaders acted at once"

    proxy.heal()
    wait_until(lambda: log_times.first("ZooKeeper session lost"), SESSION + 3, "no LOST after healing")
    # It joined again, behind the new leader: a new znode, so a higher sequence number.
    wait_until(lambda: [who for _, who in line_of(inspector, election)] == ["other", "cut-off"], 10,
               "the cut-off member did not join again behind the new leader")

    other.stop()
    cut_off.wait(cut_off.leads(2), 5, "leads again")
    assert first.term < successor.term < cut_off.leaderships[1].term


# -- an ensemble: a follower cut from the ZooKeeper leader -----------------------------------------

@pytest.fixture
def ensemble() -> Iterator[ZooKeeperEnsemble]:
    """Three servers (tests/support/zk_ensemble.py); requested before ``members``: stopped after them."""
    servers = ZooKeeperEnsemble()
    try:
        try:
            servers.start()
        except RuntimeError as exc:
            pytest.fail(str(exc), pytrace=False)
        yield servers
    finally:
        servers.stop()


def test_in_an_ensemble_a_leader_behind_a_cut_off_follower_stops_before_the_next_leads(
        ensemble: ZooKeeperEnsemble, members: Callable[[str, str], Member], election: str) -> None:
    """The cut-off leader's follower answers reads and pings from its stale copy for syncLimit x
    tickTime (10 s, longer than the 4 s session) while the ZooKeeper leader expires the session and
    the other contender leads. A renewal that only read (as renew did before) would have kept the
    cut-off leader acting until its follower gave up: two leaders for about 6 s."""
    leader = ensemble.leader()
    cut, other_side = (myid for myid in sorted(ensemble.members) if myid != leader)
    follower = ensemble.members[cut]
    cut_off = members("cut-off", follower.hosts)
    cut_off.wait(cut_off.leads(), 10, "leads")
    other = members("other", ensemble.members[other_side].hosts)
    wait_until(lambda: other.mutex.leader is not None and other.mutex.leader.instance_id == "cut-off", 10,
               "the other member never saw the first one lead")
    stale = KazooClient(follower.hosts)  # reads through the follower that will be cut off
    stale.start(timeout=10)
    try:
        ours = next(name for name in stale.get_children(election) if json.loads(
            stale.get(f"{election}/{name}")[0])["instance_id"] == "cut-off")

        ensemble.link(cut, leader).blackhole()
        started = time.monotonic()
        other.wait(other.leads(), SESSION + 5, "leads after the ZooKeeper leader expired the cut-off one's session")
        took = time.monotonic() - started
        # The dangerous case indeed: the cut-off follower still serves, and still shows our znode.
        assert follower.mode() == "follower"
        assert stale.exists(f"{election}/{ours}") is not None, "the follower already knew the znode was gone"
    finally:
        # Not a wait for stop(): closing a session is a write too, which the cut-off follower cannot
        # get committed until it gives up on the leader; the ensemble's teardown ends it sooner.
        threading.Thread(target=stale.stop, name="stale-stop", daemon=True).start()
    first, successor = cut_off.leaderships[0], other.leaderships[0]
    assert first.ended is not None and first.ended < successor.started, "two leaders acted at once"
    log.info("ensemble: the other member led %.2f s after the cut, %.2f s after the cut-off one stopped",
             took, successor.started - first.ended)
