"""DistributedMutex.integrations.apscheduler with real processes: three replicas of a program whose
BackgroundScheduler runs a job every second (tests/support/apscheduler_member.py), on a Raft cluster
on loopback, on ZooKeeper and on a PostgreSQL lease (and a Redis one in the long form: Celery beat's
test runs on Redis in make test; tests/support/scheduler_backend.py). The leader is killed (SIGKILL), the next one stopped (SIGTERM), the
next one frozen (SIGSTOP) past its lease and woken (SIGCONT); each time another replica takes over,
and a stopped one is started again (three Raft members need two to elect). SCHEDULER_FAULT_ROUNDS=N
repeats the three faults N times (the long form, in `make chaos`). Counted from the runs file and the fenced SQLite table:

    each interval (a second) ran the job at most once, in any replica
    intervals missed: none but around a fault, and at most the failover time's worth there
    every accepted run's term is at least every earlier one's, the frozen leader wrote nothing under
    its old term once woken, and the table holds exactly the runs the jobs said were accepted
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from DistributedMutex import Fence
from harness.processes import ROOT, Instance
from harness.services import rebindable_port
from support.scheduler_backend import environment, kinds, shared
from support.slots import FAILOVER, Scenario, Tally, check, read_runs, ready_lines

MEMBER = Path(__file__).parent / "support" / "apscheduler_member.py"
START_TIMEOUT = 30.0  # three interpreters importing APScheduler side by side, then an election


class Replicas:
    def __init__(self, workdir: Path, kind: str, election: dict[str, str], size: int = 3) -> None:
        self.workdir = workdir
        self.kind = kind
        self.database = workdir / "fenced.sqlite"
        self.runs_file = workdir / "runs.txt"
        with sqlite3.connect(self.database) as connection:
            connection.execute("CREATE TABLE runs (slot INTEGER, term INTEGER, node TEXT)")
            Fence(connection, "tick").create_table()
        nodes = [f"node-{i}" for i in range(1, size + 1)]
        peers = {name: ("127.0.0.1", rebindable_port()) for name in nodes}
        self.env = {name: {"PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'tests'}",
                           **environment(kind, name, peers=peers, data_dir=workdir / "data", shared=election)}
                    for name in nodes}
        self.stopped: list[Instance] = []
        self.processes = {name: self.start(name) for name in nodes}

    def start(self, name: str) -> Instance:
        if name in getattr(self, "processes", {}):
            self.stopped.append(self.processes[name])
        return Instance(name, self.env[name], self.workdir, args=(name, str(self.database), str(self.runs_file)),
                        script=MEMBER)

    def describe(self) -> str:
        return "\n".join(f"--- {p.name} (exit code {p.process.poll()}):\n{p.tail(15)}"
                         for p in [*self.stopped, *self.processes.values()])

    def stored(self) -> list[tuple[int, int, str]]:
        with sqlite3.connect(self.database) as connection:
            return sorted(connection.execute("SELECT slot, term, node FROM runs"))

    def close(self) -> None:
        for process in [*self.processes.values(), *self.stopped]:
            process.stop()


@pytest.fixture(params=kinds(short=("raft", "zookeeper", "postgres")))
def replicas(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Replicas]:
    replicas = Replicas(tmp_path, request.param, shared(request.param, request))
    yield replicas
    replicas.close()


def test_three_replicas_run_each_interval_once_through_a_crash_a_graceful_stop_and_a_freeze(replicas: Replicas) -> None:
    failover = FAILOVER[replicas.kind]
    scenario = Scenario(replicas.processes, lambda: read_runs(replicas.runs_file), describe=replicas.describe,
                        restart=replicas.start, ready=ready_lines(replicas.kind))
    scenario.accepted_after(0, 1, START_TIMEOUT)
    scenario.faults_in_turn(failover)
    last = scenario.accepted_after(scenario.faults[-1].first_slot_after, 3, 10)[-1]
    replicas.close()

    tally = Tally([r for r in read_runs(replicas.runs_file) if r.slot <= last.slot], scenario.faults)
    sys.stdout.write(f"\nAPScheduler on {replicas.kind}:\n{tally.summary()}\n")
    check(tally, failover, [row for row in replicas.stored() if row[0] <= last.slot], replicas.describe())
