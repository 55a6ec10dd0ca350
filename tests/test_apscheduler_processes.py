"""DistributedMutex.integrations.apscheduler with real processes: three replicas of a program whose
BackgroundScheduler runs a job every second (tests/support/apscheduler_member.py) on a Raft cluster
on loopback. The leader is killed (SIGKILL), then the next one stopped (SIGTERM); each time another
replica takes over, and the stopped one is started again (three Raft members need two to elect). Counted from the runs file and the fenced SQLite table:

    each interval (a whole second) ran the job at most once, in any replica
    intervals missed: none but around a fault, and at most the failover time's worth there
    every accepted run's term is at least every earlier one's (no stale leader wrote), and the
    table holds exactly the runs the jobs said were accepted

The long form (more faults, longer) is in `make chaos` (harness/chaos/).
"""

from __future__ import annotations

import json
import signal
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from DistributedMutex import Fence
from harness.processes import ROOT, Instance
from harness.services import free_port
from support.slots import RAFT_FAILOVER, Scenario, Tally, check, read_runs

MEMBER = Path(__file__).parent / "support" / "apscheduler_member.py"
START_TIMEOUT = 30.0  # three interpreters importing APScheduler side by side, then a Raft election


class Replicas:
    def __init__(self, workdir: Path, size: int = 3) -> None:
        self.workdir = workdir
        self.nodes = [f"node-{i}" for i in range(1, size + 1)]
        peers = {name: ("127.0.0.1", free_port()) for name in self.nodes}
        self.database = workdir / "fenced.sqlite"
        self.runs_file = workdir / "runs.txt"
        with sqlite3.connect(self.database) as connection:
            connection.execute("CREATE TABLE runs (slot INTEGER, term INTEGER, node TEXT)")
            Fence(connection, "tick").create_table()
        self.args = (json.dumps(peers), str(workdir / "data"), str(self.database), str(self.runs_file))
        self.processes = {name: self.start(name) for name in self.nodes}
        self.stopped: list[Instance] = []

    def start(self, name: str) -> Instance:
        peers, data, database, runs = self.args
        if name in getattr(self, "processes", {}):
            self.stopped.append(self.processes[name])
        return Instance(name, {"PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'tests'}"}, self.workdir,
                        args=(peers, name, data, database, runs), script=MEMBER)

    def describe(self) -> str:
        return "\n".join(f"--- {p.name} (exit code {p.process.poll()}):\n{p.tail(15)}"
                         for p in [*self.stopped, *self.processes.values()])

    def stored(self) -> list[tuple[int, int, str]]:
        with sqlite3.connect(self.database) as connection:
            return sorted(connection.execute("SELECT slot, term, node FROM runs"))

    def close(self) -> None:
        for process in [*self.processes.values(), *self.stopped]:
            process.stop()


@pytest.fixture
def replicas(tmp_path: Path) -> Iterator[Replicas]:
    replicas = Replicas(tmp_path)
    yield replicas
    replicas.close()


def test_three_replicas_run_each_interval_once_through_a_crash_and_a_graceful_stop(replicas: Replicas) -> None:
    scenario = Scenario(replicas.processes, lambda: read_runs(replicas.runs_file), describe=replicas.describe,
                        restart=replicas.start)
    scenario.accepted_after(0, 1, START_TIMEOUT)
    scenario.fault(signal.SIGKILL, steady=3, timeout=RAFT_FAILOVER["SIGKILL"] + 10)
    scenario.fault(signal.SIGTERM, steady=3, timeout=RAFT_FAILOVER["SIGTERM"] + 10)
    last = scenario.accepted_after(scenario.faults[-1].first_slot_after, 3, 10)[-1]
    replicas.close()

    tally = Tally([r for r in read_runs(replicas.runs_file) if r.slot <= last.slot], scenario.faults)
    sys.stdout.write(f"\nAPScheduler on Raft:\n{tally.summary()}\n")
    check(tally, RAFT_FAILOVER, [row for row in replicas.stored() if row[0] <= last.slot], replicas.describe())
