"""Three ``distributed-mutex run`` processes around one fenced job, on Raft (loopback), ZooKeeper,
PostgreSQL and Redis.

What each run proves, from the job's own log (harness/wrappers.py):

    at most one      no two commands ever wrote at overlapping times, through every fault below
    kill -9          the leading wrapper SIGKILLed: its command is gone within a second (the guard
                     reads EOF), and another instance's command writes within the failover time
    SIGSTOP          the leading wrapper frozen past its lease: its guard kills the command at the
                     local deadline, before anyone else's starts; no write under its old term is
                     accepted after a newer term's; SIGCONT, and the wrapper contends again
    SIGTERM          every wrapper stops its command and exits 0; no command is left

The failover times are printed (pytest -s) for docs/run.md.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Mapping
from pathlib import Path

import pytest

from harness.services import ZooKeeperServer, rebindable_port
from harness.wrappers import Wrappers, alive
from support.scheduler_backend import POSTGRES_LEASE, REDIS_LEASE, shared

RAFT_FAILOVER = 4.0  # election timeout 1-2 s, a vote, the command's start
ZK_SESSION = 2.0
ZK_FAILOVER = ZK_SESSION + 3.0  # the dead leader's session expires on the server, then the watch fires
# The lease runs out on the server (at most a lease after the last renewal), a contender's next try
# (PostgreSQL: every 0.5 s; Redis: woken at the expiry), the command's start; 2 s for busy cores.
LEASE_FAILOVER = {"postgres": POSTGRES_LEASE + 2.5, "redis": REDIS_LEASE + 2.5}


def scenario(tmp_path: Path, env: Mapping[str, str], failover: float, frozen_for: float) -> dict[str, float]:
    measured: dict[str, float] = {}
    with Wrappers(tmp_path, env) as group:
        group.start_all()
        first = group.wait_for_writer(timeout=20)

        # kill -9 the leading wrapper: its command goes with it, another's starts.
        killed_at = time.time()
        group.signal(first.leader, signal.SIGKILL)
        deadline = time.monotonic() + 2.0
        while alive(first.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not alive(first.pid), f"the command {first.pid} of the SIGKILLed wrapper {first.leader} still runs"
        measured["orphan gone after"] = time.time() - killed_at
        second = group.wait_for_writer(timeout=failover + 5, since=killed_at, other_than=first.leader)
        measured["kill -9 failover"] = second.first - killed_at
        last_of_first = group.log.last_of(first.leader)
        assert last_of_first is not None and last_of_first.last < killed_at + 1.0, "the orphan kept writing"

        # SIGSTOP the new leader's wrapper past its lease, then SIGCONT.
        group.start(first.leader)  # back to three contenders (Raft needs a majority of its peers)
        stopped_at = time.time()
        group.signal(second.leader, signal.SIGSTOP)
        third = group.wait_for_writer(timeout=frozen_for + failover + 5, since=stopped_at, other_than=second.leader)
        measured["SIGSTOP failover"] = third.first - stopped_at
        time.sleep(max(0.0, stopped_at + frozen_for - time.time()))
        group.signal(second.leader, signal.SIGCONT)
        assert not alive(second.pid), "the frozen wrapper's command outlived its lease"
        time.sleep(1.5)  # the woken wrapper's chance to act on its old term (it must not)
        assert group.processes[second.leader].poll() is None, "the wrapper did not survive SIGSTOP/SIGCONT"

        overlaps = group.log.overlaps()
        assert overlaps == [], f"two commands ran at once: {overlaps}"
        assert group.log.stale_accepted() == [], f"writes under an old term accepted: {group.log.stale_accepted()}"
        commands = [run.pid for run in group.log.runs()]
        codes = group.stop_all()
        assert set(codes.values()) == {0}, f"exit codes after SIGTERM: {codes}"
        deadline = time.monotonic() + 3.0
        while any(alive(pid) for pid in commands) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not [pid for pid in commands if alive(pid)], "a command outlived its wrapper's SIGTERM"
        measured["runs"] = len(group.log.runs())
        measured["overlaps"] = len(overlaps)
    print(f"\n{env['ELECTION_BACKEND']}: " + ", ".join(f"{k} {v:.2f}" for k, v in measured.items()))
    return measured


def test_three_wrappers_on_raft(tmp_path: Path) -> None:
    ports = {name: rebindable_port() for name in "abc"}  # the killed wrapper starts again on its port
    peers = ",".join(f"{name}=127.0.0.1:{port}" for name, port in ports.items())
    env = {"ELECTION_BACKEND": "raft", "RAFT_PEERS": peers, "RAFT_DATA_DIR": str(tmp_path / "raft")}
    # No RAFT_ID: each instance's INSTANCE_ID (a, b, c) is its peer id.
    measured = scenario(tmp_path, env, RAFT_FAILOVER, frozen_for=3.0)
    assert measured["kill -9 failover"] < RAFT_FAILOVER


def test_three_wrappers_on_zookeeper(tmp_path: Path, zookeeper_server: ZooKeeperServer) -> None:
    env = {"ELECTION_BACKEND": "zookeeper", "ZOOKEEPER_HOSTS": zookeeper_server.hosts,
           "ZOOKEEPER_PATH": f"/run-test-{uuid.uuid4().hex[:10]}", "ZOOKEEPER_SESSION_TIMEOUT": str(ZK_SESSION)}
    measured = scenario(tmp_path, env, ZK_FAILOVER, frozen_for=ZK_SESSION + 2.0)
    assert measured["kill -9 failover"] < ZK_FAILOVER


@pytest.mark.parametrize("kind", ["postgres", "redis"])
def test_three_wrappers_on_a_lease(tmp_path: Path, request: pytest.FixtureRequest, kind: str) -> None:
    env = shared(kind, request)
    lease = float(env[f"{kind.upper()}_LEASE_DURATION"])
    measured = scenario(tmp_path, env, LEASE_FAILOVER[kind], frozen_for=lease + 2.0)
    assert measured["kill -9 failover"] < LEASE_FAILOVER[kind]


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(child) for child in (task / "children").read_text().split()]
    return found


def test_with_the_guard_frozen_too_the_fence_refuses_the_old_term(tmp_path: Path) -> None:
    """The last line of defence: a wrapper *and* its guard frozen (only a deliberate SIGSTOP of both
    does that) leave the command running past the lease; the next leader's command registers its
    newer term, and from then on every write of the old one is refused. SIGCONT: the guard, past
    its deadline, kills the old command at once."""
    ports = {name: rebindable_port() for name in "abc"}
    env = {"ELECTION_BACKEND": "raft", "RAFT_DATA_DIR": str(tmp_path / "raft"),
           "RAFT_PEERS": ",".join(f"{name}=127.0.0.1:{port}" for name, port in ports.items())}
    with Wrappers(tmp_path, env) as group:
        group.start_all()
        old = group.wait_for_writer(timeout=20)
        wrapper = group.processes[old.leader].pid
        guards = children(wrapper)
        assert len(guards) == 1, f"the wrapper {wrapper} should have one child, the guard: {guards}"
        frozen_at = time.time()
        for pid in (wrapper, guards[0]):
            os.kill(pid, signal.SIGSTOP)
        new = group.wait_for_writer(timeout=RAFT_FAILOVER + 5, since=frozen_at, other_than=old.leader)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and sum(
                line.pid == old.pid and not line.accepted for line in group.log.lines()) < 3:
            time.sleep(0.05)
        lines = group.log.lines()
        first_new = min(line.at for line in lines if line.pid == new.pid and line.accepted)
        late = [line for line in lines if line.pid == old.pid and line.at > first_new]
        assert late, "the old command should still run while its wrapper and guard are frozen"
        assert not [line for line in late if line.accepted], f"writes under the old term accepted: {late}"
        assert new.term > old.term
        continued_at = time.monotonic()
        for pid in (guards[0], wrapper):
            os.kill(pid, signal.SIGCONT)
        while alive(old.pid) and time.monotonic() < continued_at + 2:
            time.sleep(0.02)
        assert not alive(old.pid), "the guard, thawed past its deadline, did not kill the old command"
        print(f"\nfrozen guard: {len(late)} late writes of term {old.term}, all refused; "
              f"killed {time.monotonic() - continued_at:.2f} s after SIGCONT")
        assert group.log.stale_accepted() == []
        assert set(group.stop_all().values()) == {0}
