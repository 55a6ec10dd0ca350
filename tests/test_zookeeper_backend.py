"""The ZooKeeper election backend against a real ZooKeeper server (tests/support/services.py).

What each test proves:

    the line              the lowest znode leads; every other contender watches exactly the znode
                          just below its own (the server's wchc/wchp say so); a deletion wakes
                          only the contender behind it
    read_leader           works from a process that does not contend, and makes no znode
    advance_term          raises the term under the leader's znode; the next leader's is higher
    session timeout       the one the server granted is the lease, and a lower one is logged; one
                          so much lower that the loop could not renew in time stops the program
                          with one line (docs/bad-input.md); the setting is 2..40 s
    renew is a write      it commits a transaction (the server's zxid moves), which the ZooKeeper
                          leader checks the session for; a renewal after our znode went fails
    errors                unreachable: one line naming the hosts argument, within the call timeout,
                          and the loop is woken when the server comes; refused by an ACL: rejected
    handover (processes)  SIGTERM of the leader: the next leads within 1 s; SIGKILL: within the
                          session timeout + 2 s
    cut off (in process)  connection reset: leader work ends within 1 s of SUSPENDED, before the
                          next leader; blackholed until the session expired: no two leaders at
                          once, and after LOST the instance rejoins with a new, higher term
    ensemble              3 servers; the leader's follower cut from the ZooKeeper leader keeps
                          serving reads while the leader expires the session: the cut-off
                          leader stops before the next one leads (a read-only renewal would not)
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
from kazoo.security import make_digest_acl

from distributed_mutex_demo.backend_settings import ZooKeeperSettings
from DistributedMutex.backend import ElectionBackend, Held, Identity, Lease
from DistributedMutex.backends.zookeeper.backend import ZooKeeperBackend
from DistributedMutex.errors import ConfigurationError, LeaseLostError, StorageRejectedError, StorageUnavailableError
from DistributedMutex.mutex import DistributedMutex, RoleContext
from support.bad_input import assert_stops_with
from support.fake_openweather import FakeOpenWeather
from support.processes import Instance, wait_until
from support.services import ZooKeeperServer
from support.tcpproxy import TcpProxy
from support.zk_ensemble import ZooKeeperEnsemble

log = logging.getLogger(__name__)

SESSION = 4.0  # seconds; the test server's tick is 0.5 s, so it grants 1 to 10 s as asked
CONTENDER = Path(__file__).resolve().parent / "support" / "zk_contender.py"


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
    client = KazooClient(zookeeper_server.hosts)
    client.start(timeout=10)
    yield client
    client.stop()
    client.close()


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


def line_of(inspector: KazooClient, path: str) -> list[tuple[str, str]]:
    """(znode path, instance_id) of every contender, lowest first."""
    names = sorted(inspector.get_children(path), key=lambda name: int(name[-10:]))
    return [(f"{path}/{name}", json.loads(inspector.get(f"{path}/{name}")[0])["instance_id"]) for name in names]


# -- the settings ------------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "message"), [
    ({"hosts": "zk1:21810000"}, "hosts: 'zk1:21810000': the port must be a number from 1 to 65535"),
    ({"hosts": ""}, "hosts: '' is not host:port"),
    ({"hosts": "zk1:2181/apps"}, "hosts: 'zk1:2181/apps' has a path: give the znode path in the path argument instead"),
    ({"hosts": 2181}, "hosts: must be a string of host:port pairs like '127.0.0.1:2181', got 2181"),
    ({"path": "election"}, "path: must be an absolute znode path like /election (letters, digits, . _ - between "
                           "slashes, no trailing slash), got 'election'"),
    ({"path": "/zookeeper/election"}, "path: '/zookeeper/election' is reserved by ZooKeeper: choose another path"),
    ({"session_timeout": 0.5}, "session_timeout: must be from 2 to 40 seconds"),
    ({"session_timeout": 1.9}, "session_timeout: must be from 2 to 40 seconds"),
    ({"session_timeout": 40.5}, "session_timeout: must be from 2 to 40 seconds"),
    ({"session_timeout": float("nan")}, "session_timeout: must be from 2 to 40 seconds"),
    ({"session_timeout": "five"}, "session_timeout: must be a number of seconds, got 'five'"),
    ({"call_timeout": 0}, "call_timeout: must be a number of seconds above 0 and at most the 5 s session timeout"),
])
def test_bad_arguments_are_one_line_in_the_library_s_terms(options: dict, message: str) -> None:
    arguments = {"hosts": "127.0.0.1:2181", "path": "/election", "session_timeout": 5.0, **options}
    with pytest.raises(ConfigurationError) as raised:
        ZooKeeperBackend(arguments.pop("hosts"), arguments.pop("path"), **arguments)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)
    assert "ZOOKEEPER" not in str(raised.value)


def test_a_program_s_own_setting_names_reach_the_messages() -> None:
    """The demo passes its settings' names: its users read ZOOKEEPER_PATH, not path."""
    names = {"hosts": "ZOOKEEPER_HOSTS", "path": "ZOOKEEPER_PATH", "session_timeout": "ZOOKEEPER_SESSION_TIMEOUT"}
    with pytest.raises(ConfigurationError) as raised:
        ZooKeeperBackend("zk1:2181/apps", names=names)
    assert str(raised.value) == "ZOOKEEPER_HOSTS: 'zk1:2181/apps' has a path: give the znode path in ZOOKEEPER_PATH instead"
    with pytest.raises(ConfigurationError, match=r"^ZOOKEEPER_SESSION_TIMEOUT: must be from 2 to 40"):
        ZooKeeperBackend("127.0.0.1:2181", session_timeout=100, names=names)


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
    # just below its own; the leader's watches nothing; and each znode has at most one watcher.
    by_session = zookeeper_server.watches_by_session()
    session = {name: backend.session_id for name, backend in backends.items()}
    assert {name: by_session.get(session[name], set()) for name in names} == {
        "a": set(), "b": {znode["a"]}, "c": {znode["b"]}, "d": {znode["c"]}}
    assert zookeeper_server.watchers_by_path() == {
        znode["a"]: {session["b"]}, znode["b"]: {session["c"]}, znode["c"]: {session["d"]}}

    # The leader leaves: only the contender behind it is woken, and it leads with a higher term.
    backends["a"].release(lease)
    wakes["b"].wait(1.0, "b, behind the released leader")
    successor = backends["b"].acquire(Identity("b"), time.monotonic())
    assert isinstance(successor, Lease) and successor.term > lease.term
    assert (wakes["c"].count, wakes["d"].count) == (0, 0), "a contender not behind the leader was woken"

    # One in the middle leaves: the one behind it is woken and watches the next lower one.
    held = backends["c"].acquire(Identity("c"), time.monotonic())
    assert isinstance(held, Held)
    backends["c"].close()
    wakes["d"].wait(1.0, "d, behind c")
    assert isinstance(backends["d"].acquire(Identity("d"), time.monotonic()), Held)
    assert zookeeper_server.watches_by_session().get(session["d"]) == {znode["b"]}
    assert zookeeper_server.watchers_by_path() == {znode["b"]: {session["d"]}}


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
    # (margin + 2 x renew interval = 0.6 x asked = 0.96 x granted).
    asked = most * 1.6
    backend = make(session_timeout=asked)
    lease = backend.acquire(Identity("greedy"), time.monotonic())
    assert isinstance(lease, Lease)
    assert lease.duration == most == backend.session_timeout
    assert backend.renew(lease, time.monotonic()).duration == most
    warnings = [r.getMessage() for r in caplog.records if "granted a session timeout" in r.getMessage()]
    assert warnings == [f"ZooKeeper granted a session timeout of {most:g} s, not the {asked:g} s asked for "
                        f"(session_timeout; the server allows 2 to 20 ticks): leases last {most:g} s"]


def test_a_granted_session_timeout_too_short_for_the_timing_is_rejected_in_one_line(
        make: Callable[..., ZooKeeperBackend], zookeeper_server: ZooKeeperServer, inspector: KazooClient,
        election: str) -> None:
    most = 20 * zookeeper_server.tick
    # 1.7 x: margin + 2 x renew interval of the asked timing = 1.02 x what is granted. The loop
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
        self.mutex = DistributedMutex(self._lead, backend=self.backend, identity=Identity(name),
                                      timing=ZooKeeperSettings(hosts, path, SESSION).timing())
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
