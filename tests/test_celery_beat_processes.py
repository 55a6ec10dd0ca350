"""DistributedMutex.integrations.celery with real processes: three `celery beat -S
DistributedMutex.integrations.celery:LeaderScheduler` processes (on a Raft cluster on loopback, on
ZooKeeper and on a Redis lease; on a PostgreSQL one too in the long form, APScheduler's test running
on PostgreSQL in make test: tests/support/scheduler_backend.py), two real `celery worker` processes, and the machine's Redis as the broker (a database
number and a queue of this test's own). The app: tests/support/celery_app.py, one task every second.

The leading beat is killed (SIGKILL), the next one stopped (SIGTERM), each started again afterwards
(three Raft members need two to elect), and the next one frozen (SIGSTOP) past its lease and woken
(SIGCONT). SCHEDULER_FAULT_ROUNDS=N repeats the three faults N times (the long form, in `make
chaos`). Counted from what the workers ran:

    each interval (a whole second) was sent and run at most once, whoever led
    intervals missed: none but around a fault, and at most the failover time's worth there
    every accepted run's term is at least every earlier one's, the frozen beat sent nothing under its
    old term once woken, and the fenced table holds exactly the runs the tasks said were accepted
"""

from __future__ import annotations

import sqlite3
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from DistributedMutex import Fence
from harness.processes import ROOT, Instance
from harness.redis_server import with_db
from harness.services import rebindable_port
from support.scheduler_backend import environment, kinds, shared
from support.slots import FAILOVER, Scenario, Tally, check, read_runs, ready_lines

CELERY = Path(__file__).parent / "support" / "celery_main.py"
REDIS_DB = 13  # this test's database on the machine's Redis (the other tests use 0 with key prefixes)
START_TIMEOUT = 45.0  # five interpreters importing Celery side by side, then a Raft election


class Deployment:
    def __init__(self, workdir: Path, redis_url: str, kind: str, election: dict[str, str], size: int = 3) -> None:
        self.workdir = workdir
        self.kind = kind
        self.election = election
        self.queue = f"beat-test-{uuid.uuid4().hex[:12]}"
        self.broker = with_db(redis_url, REDIS_DB)
        self.database = workdir / "fenced.sqlite"
        self.runs_file = workdir / "runs.txt"
        with sqlite3.connect(self.database) as connection:
            connection.execute("CREATE TABLE runs (slot INTEGER, term INTEGER, node TEXT)")
            Fence(connection, "tick").create_table()
        self.env = {"PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'tests'}:{ROOT / 'tests' / 'support'}",
                    "CELERY_BROKER_URL": self.broker,
                    "CELERY_QUEUE": self.queue, "FENCED_DATABASE": str(self.database),
                    "RUNS_FILE": str(self.runs_file)}
        self.peers = {f"node-{i}": ("127.0.0.1", rebindable_port()) for i in range(1, size + 1)}
        self.stopped: list[Instance] = []
        self.workers = [self._worker(f"worker-{i}") for i in (1, 2)]
        self.beats = {name: self.start_beat(name) for name in self.peers}

    def _worker(self, name: str) -> Instance:
        directory = self.workdir / name
        directory.mkdir()
        return Instance(name, self.env, directory, script=CELERY,
                        args=("-A", "celery_app", "worker", "--pool", "solo", "-Q", self.queue, "-n", f"{name}@%h",
                              "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat"))

    def start_beat(self, name: str) -> Instance:
        if name in getattr(self, "beats", {}):
            self.stopped.append(self.beats[name])
        directory = self.workdir / name
        directory.mkdir(exist_ok=True)
        env = {**self.env, **environment(self.kind, name, peers=self.peers, data_dir=self.workdir / "raft",
                                         shared=self.election)}
        return Instance(name, env, directory, script=CELERY,
                        args=("-A", "celery_app", "beat", "-S", "DistributedMutex.integrations.celery:LeaderScheduler",
                              "--loglevel", "INFO", "--pidfile="))

    def describe(self) -> str:
        return "\n".join(f"--- {p.name} (exit code {p.process.poll()}):\n{p.tail(15)}"
                         for p in [*self.stopped, *self.beats.values(), *self.workers])

    def stored(self) -> list[tuple[int, int, str]]:
        with sqlite3.connect(self.database) as connection:
            return sorted(connection.execute("SELECT slot, term, node FROM runs"))

    def close(self) -> None:
        for process in [*self.beats.values(), *self.stopped, *self.workers]:
            process.stop()
        client = redis.Redis.from_url(self.broker)
        keys = [key for key in client.scan_iter() if self.queue.encode() in key]
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture(params=kinds(short=("raft", "zookeeper", "redis")))
def deployment(request: pytest.FixtureRequest, tmp_path: Path, redis_url: str) -> Iterator[Deployment]:
    deployment = Deployment(tmp_path, redis_url, request.param, shared(request.param, request))
    yield deployment
    deployment.close()


def test_three_beats_send_each_interval_once_through_a_crash_a_graceful_stop_and_a_freeze(deployment: Deployment) -> None:
    for worker in deployment.workers:
        worker.wait_for(r"ready\.", timeout=START_TIMEOUT)
    scenario = Scenario(deployment.beats, lambda: read_runs(deployment.runs_file), describe=deployment.describe,
                        restart=deployment.start_beat, ready=ready_lines(deployment.kind))
    scenario.accepted_after(0, 1, START_TIMEOUT)
    failover = FAILOVER[deployment.kind]
    scenario.faults_in_turn(failover)
    last = scenario.accepted_after(scenario.faults[-1].first_slot_after, 3, 10)[-1]
    deployment.close()

    tally = Tally([r for r in read_runs(deployment.runs_file) if r.slot <= last.slot], scenario.faults)
    sys.stdout.write(f"\nCelery beat on {deployment.kind}, two workers:\n{tally.summary()}\n")
    check(tally, failover, [row for row in deployment.stored() if row[0] <= last.slot], deployment.describe())
    ran = {p.name: p.count(r"celery_app\.tick\[.*\] (succeeded|ignored)") for p in deployment.workers}
    assert all(ran.values()), f"a worker ran nothing: {ran} (the test means two workers sharing the queue)"
