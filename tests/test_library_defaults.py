"""The library as its examples use it: each backend with every argument but the required ones at
its default, no timing, no identity. Real services, real processes (tests/support/default_contender.py).

What each test proves:

    defaults elect, lead, fail over   three processes per backend: exactly one leads (its task runs,
                                      the storage names it as <hostname>-<pid>), the others' worker
                                      tasks run (Raft); SIGKILL of the leader: another's task runs,
                                      in a higher term, within a bound the backend's own timing sets
    a timing the backend cannot       refused when DistributedMutex is built, in one line in the
    honour                            library's terms; one it can honour is taken as given
    ElectionTiming's own rules        said in its arguments' names, never a program's settings
"""

from __future__ import annotations

import math
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from DistributedMutex import (
    AzureBlobLeaseBackend,
    ConfigurationError,
    DistributedMutex,
    ElectionBackend,
    ElectionTiming,
    PostgresLeaseBackend,
    RaftBackend,
    RedisLeaseBackend,
    RoleContext,
    ZooKeeperBackend,
)
from harness.processes import Instance
from harness.redis_server import RedisServer
from harness.services import Azurite, ZooKeeperServer, free_port

CONTENDER = Path(__file__).resolve().parent / "support" / "default_contender.py"
HOST = socket.gethostname()


def lead(ctx: RoleContext) -> None:
    """Never run: these mutexes are only built."""


class Contenders:
    """Processes running default_contender.py, and what their output says."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd
        self.running: list[Instance] = []

    def start(self, name: str, *args: str) -> Instance:
        instance = Instance(name, {}, self.cwd, args=args, script=CONTENDER)
        self.running.append(instance)
        return instance

    def leading(self, after: float = 0.0) -> list[tuple[Instance, int, int, float]]:
        """(instance, term, pid, CLOCK_MONOTONIC) of every ``lead`` line read at or after ``after``."""
        found = []
        for instance in self.running:
            for line in instance.lines:
                if line.at >= after and line.text.startswith("lead "):
                    _, term, pid, at = line.text.split()
                    found.append((instance, int(term), int(pid), float(at)))
        return found

    def wait_for_leader(self, timeout: float, after: float = 0.0) -> tuple[Instance, int, int, float]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.leading(after)
            if found:
                return min(found, key=lambda f: f[3])
            time.sleep(0.05)
        tails = "\n".join(f"{i.name}:\n{i.tail(10)}" for i in self.running)
        raise AssertionError(f"no leader task ran within {timeout:g} s; last lines:\n{tails}")

    def stop(self) -> None:
        for instance in self.running:
            instance.stop()


@pytest.fixture
def contenders(tmp_path: Path) -> Iterator[Contenders]:
    running = Contenders(tmp_path)
    yield running
    running.stop()


def elect_lead_and_fail_over(contenders: Contenders, reader: ElectionBackend, crash_bound: float,
                             start_timeout: float = 30.0) -> tuple[int, int]:
    """One leader among the started contenders, named by the storage; SIGKILL it; another leads
    within ``crash_bound`` in a higher term. Returns the two terms."""
    first, term, pid, _ = contenders.wait_for_leader(start_timeout)
    record = reader.read_leader()
    assert record is not None and record.instance_id == f"{HOST}-{pid}" and record.term == term, record
    assert [f[0].name for f in contenders.leading()] == [first.name], "more than one leader task ran"

    killed_at = first.signal(signal.SIGKILL)
    first.wait(10)
    second, next_term, next_pid, started = contenders.wait_for_leader(crash_bound + 10, after=killed_at)
    assert second is not first and next_term > term
    assert started - killed_at <= crash_bound, (
        f"another leader task ran {started - killed_at:.2f} s after the leader was killed (bound {crash_bound:g} s)")
    record = reader.read_leader()
    assert record is not None and record.instance_id == f"{HOST}-{next_pid}", record
    return term, next_term


# -- every argument at its default: elect, lead, fail over -----------------------------------------

def test_raft_with_defaults_elects_leads_and_fails_over(contenders: Contenders, tmp_path: Path) -> None:
    """RaftBackend(peers, node_id, data_dir): election_timeout (1, 2) s, the timing from it."""
    peers = {name: ("127.0.0.1", free_port()) for name in ("a", "b", "c")}
    listed = ",".join(f"{name}={host}:{port}" for name, (host, port) in peers.items())
    for name in peers:
        contenders.start(name, "raft", name, listed, str(tmp_path / "raft"))
    # A reader outside the cluster: it asks the peers who leads.
    reader = RaftBackend(peers, "a", tmp_path / "reader")
    # Twice the maximum election timeout after the last heartbeat: the followers' timeouts run out
    # and one of them wins (what test_raft_processes measures with the demo), plus a second.
    elect_lead_and_fail_over(contenders, reader, crash_bound=2 * 2.0 + 1)
    workers = [i for i in contenders.running if i.process.poll() is None]
    assert len(workers) == 2 and all(i.find(r"^work ") for i in workers), "a worker task did not run"


def test_zookeeper_with_defaults_elects_leads_and_fails_over(contenders: Contenders,
                                                             zookeeper_server: ZooKeeperServer) -> None:
    """ZooKeeperBackend(hosts): path /election, session timeout 5 s, the timing from it."""
    for name in ("a", "b", "c"):
        contenders.start(name, "zookeeper", zookeeper_server.hosts)
    reader = ZooKeeperBackend(zookeeper_server.hosts)
    try:
        # The killed leader's session expires 5 s after it last heard from it; its successor's
        # watch fires then (test_zookeeper_backend measures the same with an explicit path).
        elect_lead_and_fail_over(contenders, reader, crash_bound=5.0 + 2)
    finally:
        reader.close()


def test_redis_with_defaults_elects_leads_and_fails_over(contenders: Contenders, redis_server: RedisServer) -> None:
    """RedisLeaseBackend(url): keys under distributed-mutex:election (a server of the test's own, so
    that the default prefix meets nobody else's), a 5 s lease renewed every second."""
    for name in ("a", "b", "c"):
        contenders.start(name, "redis", redis_server.url)
    reader = RedisLeaseBackend(redis_server.url)
    try:
        # The killed leader's key expires 5 s after its last renewal; the contenders' timers fire then.
        elect_lead_and_fail_over(contenders, reader, crash_bound=5.0 + 1.5)
    finally:
        reader.close()


def test_azure_with_defaults_elects_leads_and_fails_over(contenders: Contenders, azurite: Azurite,
                                                         container_name: str) -> None:
    """AzureBlobLeaseBackend(connection_string, container, blob): a 15 s lease, renewed every 5 s,
    polled every 2 s."""
    for name in ("a", "b", "c"):
        contenders.start(name, "azure", azurite.connection_string, container_name, "leader")
    reader = AzureBlobLeaseBackend(azurite.connection_string, container_name, "leader")
    try:
        # The lease runs out 15 s after the last renewal, then the next poll (2 s +10 %) takes it.
        elect_lead_and_fail_over(contenders, reader, crash_bound=15 + 2.2 + 3)
    finally:
        reader.close()


# -- a timing the backend cannot honour: refused when DistributedMutex is built ---------------------

Build = Callable[[Path], ElectionBackend]
BACKENDS: dict[str, Build] = {
    "raft": lambda tmp: RaftBackend(peers={"a": ("127.0.0.1", 7001)}, node_id="a", data_dir=tmp),
    "zookeeper": lambda tmp: ZooKeeperBackend("127.0.0.1:2181"),
    "azure": lambda tmp: AzureBlobLeaseBackend("UseDevelopmentStorage=true", "container", "blob"),
    "redis": lambda tmp: RedisLeaseBackend("redis://127.0.0.1:6379/0"),
    "postgres": lambda tmp: PostgresLeaseBackend("postgresql://127.0.0.1:5432/test", "defaults"),
}


@pytest.mark.parametrize(("backend", "timing", "message"), [
    ("raft", ElectionTiming(), "timing: lease_duration=15 s is longer than the 1 s lease RaftBackend can guarantee "
                               "(election_timeout minimum 1 s)"),
    ("raft", ElectionTiming(1.5, 0.3, 0.5, 0.25), "timing: lease_duration=1.5 s is longer than the 1 s lease "
                                                  "RaftBackend can guarantee (election_timeout minimum 1 s)"),
    ("zookeeper", ElectionTiming(), "timing: lease_duration=15 s is longer than the 5 s lease ZooKeeperBackend can "
                                    "guarantee (session_timeout 5 s)"),
    ("redis", ElectionTiming(), "timing: lease_duration=15 s is longer than the 5 s lease RedisLeaseBackend can "
                                "guarantee (lease_duration 5 s)"),
    ("azure", ElectionTiming(20, 6, 2), "timing: lease_duration=20 s is longer than the 15 s lease "
                                        "AzureBlobLeaseBackend can guarantee (lease_duration 15 s)"),
    # A margin below the backend's own: the leader would act closer to the lease's end than its
    # guarantee allows (a shorter lease does not make up for it: the storage may grant less still).
    ("raft", ElectionTiming(1.0, 0.4, 0.5, 0.001), "timing: safety_margin=0.001 s is less than the 0.25 s safety "
                                                   "margin RaftBackend needs"),
    ("raft", ElectionTiming(0.8, 0.2, 0.4, 0.2), "timing: safety_margin=0.2 s is less than the 0.25 s safety "
                                                 "margin RaftBackend needs"),
    ("zookeeper", ElectionTiming(5, 1, 1, 0.5), "timing: safety_margin=0.5 s is less than the 1 s safety margin "
                                                "ZooKeeperBackend needs"),
    ("azure", ElectionTiming(15, 5, 2, 1), "timing: safety_margin=1 s is less than the 2 s safety margin "
                                           "AzureBlobLeaseBackend needs"),
])
def test_a_timing_the_backend_cannot_honour_is_refused_at_construction(
        tmp_path: Path, backend: str, timing: ElectionTiming, message: str) -> None:
    built = BACKENDS[backend](tmp_path)
    try:
        with pytest.raises(ConfigurationError) as raised:
            DistributedMutex(lead, backend=built, timing=timing)
        assert str(raised.value) == message
        assert raised.value.setting == "timing"
    finally:
        built.close()


@pytest.mark.parametrize(("backend", "timing"), [
    ("raft", ElectionTiming(1.0, 0.2, 0.5, 0.25)),  # its own
    ("raft", ElectionTiming(0.8, 0.2, 0.4, 0.25)),  # a shorter lease: merely careful
    ("raft", ElectionTiming(1.0, 0.2, 0.5, 0.3)),  # a larger margin: the same
    ("zookeeper", ElectionTiming(5, 1, 1, 1)),
    ("azure", ElectionTiming(15, 5, 0.5)),
])
def test_a_timing_the_backend_can_honour_is_taken_as_given(tmp_path: Path, backend: str,
                                                           timing: ElectionTiming) -> None:
    built = BACKENDS[backend](tmp_path)
    try:
        DistributedMutex(lead, backend=built, timing=timing)  # no error
        assert timing.lease_duration <= built.default_timing().lease_duration
    finally:
        built.close()


def test_no_timing_means_the_backend_s_own(tmp_path: Path) -> None:
    owns = {name: build(tmp_path).default_timing() for name, build in BACKENDS.items()}
    assert owns == {
        "raft": ElectionTiming(lease_duration=1.0, renew_interval=0.3, acquire_interval=0.5, safety_margin=0.25),
        "zookeeper": ElectionTiming(lease_duration=5.0, renew_interval=5 / 3 - 0.2, acquire_interval=1.0,
                                    safety_margin=1.0),
        "azure": ElectionTiming(lease_duration=15, renew_interval=5.0, acquire_interval=2, safety_margin=2),
        "redis": ElectionTiming(lease_duration=5.0, renew_interval=1.0, acquire_interval=1.0, safety_margin=1.0),
        "postgres": ElectionTiming(lease_duration=5.0, renew_interval=1.6, acquire_interval=0.5, safety_margin=1.0),
    }


def test_something_else_than_a_timing_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match=r"^timing: must be an ElectionTiming, got dict$"):
        DistributedMutex(lead, backend=BACKENDS["raft"](tmp_path), timing={"lease_duration": 1})  # type: ignore[arg-type]


# -- ElectionTiming's own rules, in its arguments' names -------------------------------------------

@pytest.mark.parametrize(("arguments", "message"), [
    ({"renew_interval": 10}, "renew_interval: 10 s is too close to lease_duration=15 s: it must be at most "
                             "(lease_duration - 2 s safety_margin) / 2 = 6.5 s, so that a failed renewal is retried "
                             "before the lease ends"),
    ({"acquire_interval": 20}, "acquire_interval: 20 s must be above 0 and at most lease_duration=15 s"),
    ({"acquire_interval": 0}, "acquire_interval: 0 s must be above 0 and at most lease_duration=15 s"),
    ({"renew_interval": 0}, "renew_interval: must be a positive number of seconds, got 0"),
    ({"safety_margin": 0}, "safety_margin: must be positive, got 0"),
    ({"lease_duration": 2}, "lease_duration: 2 s must be longer than the 2 s safety_margin"),
    ({"lease_duration": math.nan}, "lease_duration: must be a finite number of seconds, got nan"),
    ({"renew_interval": "5"}, "renew_interval: must be a number of seconds, got '5'"),
])
def test_election_timing_speaks_of_its_own_arguments(arguments: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        ElectionTiming(**arguments)  # type: ignore[arg-type]
    assert str(raised.value) == message


def test_the_defaults_need_no_third_party_module_for_raft() -> None:
    """RaftBackend with its defaults, imported in a fresh interpreter: none of the other backends'
    packages is loaded (the issue: Raft needs no dependency)."""
    import subprocess

    code = ("import sys, tempfile; from DistributedMutex import DistributedMutex, RaftBackend; "
            "b = RaftBackend({'a': ('127.0.0.1', 7001)}, 'a', tempfile.mkdtemp()); DistributedMutex(print, backend=b); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'azure', 'kazoo', 'dotenv', 'requests'}))")
    src = str(Path(__file__).resolve().parents[1] / "src")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": src, "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"

