"""One conformance suite, the same assertions for every election backend (azure, zookeeper, raft,
postgres, redis).

Per backend, one scenario runs real processes of `python src/DistributedMutex/test.py` (three
members sharing an SQLite file, a leadership journal and the local weather stand-in):

    three start -> one leads; the others and `--status` say who
    SIGTERM the leader -> another leads (graceful failover); the stopped member comes back
    SIGKILL the new leader -> another leads (crash failover)
    a write with the killed leader's term is refused by the fencing check

Each test below then checks one property of what happened, from evidence outside the instances
where there is some: the journal's CLOCK_MONOTONIC intervals, the database, `--status`.
"""

from __future__ import annotations

import itertools
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from distributed_mutex_demo.stores.sqlite import SQLiteStore
from distributed_mutex_demo.weather import Reading
from DistributedMutex.errors import StaleTermError
from DistributedMutex.journal import read_journal
from harness.clusters import (
    MEMBERS,
    AzureCluster,
    BackendCluster,
    PostgresCluster,
    RaftCluster,
    RedisCluster,
    ZooKeeperCluster,
)
from harness.fake_openweather import FakeOpenWeather
from harness.processes import SCRIPT, Instance, wait_until
from harness.redis_server import delete_prefix

BACKENDS = ("azure", "zookeeper", "raft", "postgres", "redis")
STORED = r"stored \d+ readings"


@dataclass
class Scenario:
    """What happened, as the suite's checks need it."""

    cluster: BackendCluster
    journal: list[dict[str, Any]] = field(default_factory=list)
    pids: dict[int, str] = field(default_factory=dict)  # every process started: pid -> member
    first: dict[str, Any] = field(default_factory=dict)  # journal start lines
    second: dict[str, Any] = field(default_factory=dict)
    third: dict[str, Any] = field(default_factory=dict)
    sigterm_at: float = 0.0
    sigkill_at: float = 0.0
    sigterm_exit: int | None = None
    workers_named: dict[str, str] = field(default_factory=dict)  # worker -> the line naming the leader
    statuses: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (exit code, JSON)
    stale_refusals: list[str] = field(default_factory=list)
    current_write: int = 0
    rows_by_term: dict[int, set[str]] = field(default_factory=dict)


@pytest.fixture(scope="module", params=BACKENDS)
def scenario(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
             weather_server: FakeOpenWeather) -> Iterator[Scenario]:
    workdir = tmp_path_factory.mktemp(f"conformance-{request.param}")
    cluster = make_cluster(request, request.param, workdir)
    yield run_scenario(cluster, workdir, weather_server)


def make_cluster(request: pytest.FixtureRequest, backend: str, workdir: Path) -> BackendCluster:
    if backend == "azure":
        return AzureCluster(request.getfixturevalue("azurite"))
    if backend == "zookeeper":
        return ZooKeeperCluster(request.getfixturevalue("zookeeper_server").hosts)
    if backend == "postgres":
        server = request.getfixturevalue("postgres_server")
        cluster = PostgresCluster(server.url)
        request.addfinalizer(lambda: server.drop_table(cluster.table))
        return cluster
    if backend == "redis":
        redis_cluster = RedisCluster(request.getfixturevalue("redis_url"))
        request.addfinalizer(lambda: delete_prefix(redis_cluster.url, redis_cluster.prefix))
        return redis_cluster
    return RaftCluster(workdir / "raft")


def run_scenario(cluster: BackendCluster, workdir: Path, weather: FakeOpenWeather) -> Scenario:
    journal, database = workdir / "leadership.jsonl", workdir / "weather.sqlite3"
    base = {"SQLITE_PATH": str(database), "LEADERSHIP_JOURNAL": str(journal), "OPENWEATHER_API_KEY": weather.api_key,
            "OPENWEATHER_URL": weather.url, "WEATHER_CITIES": "Hanoi,Tokyo", "FETCH_INTERVAL": "1",
            "READ_INTERVAL": "0.5", "LOG_LEVEL": "INFO"}
    seen = Scenario(cluster)
    running: dict[str, Instance] = {}

    def start(name: str) -> Instance:
        instance = Instance(name, {**base, **cluster.env_for(name)}, workdir)
        running[name], seen.pids[instance.process.pid] = instance, name
        return instance

    def status() -> tuple[int, dict[str, Any]]:
        done = subprocess.run([sys.executable, str(SCRIPT), "--status"], cwd=workdir, capture_output=True, text=True,
                              env={**Instance.clean_environment(), **base, **cluster.env_for(MEMBERS[0])}, timeout=30)
        assert done.stdout.strip(), f"--status printed nothing (exit {done.returncode}): {done.stderr}"
        return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])

    try:
        for name in MEMBERS:
            start(name)
        seen.first = next_start(journal, after=0.0, timeout=40)
        leader = running[seen.first["instance"]]
        for name, worker in running.items():
            if worker is not leader:
                line = worker.wait_for(rf"leader is {leader.name} \(term {seen.first['term']}\)", timeout=20)
                seen.workers_named[name] = line.text
        leader.wait_for(STORED, timeout=15)
        seen.statuses.append(status())

        seen.sigterm_at = leader.signal(signal.SIGTERM)
        seen.second = next_start(journal, after=seen.sigterm_at, timeout=cluster.graceful_bound + 20)
        seen.sigterm_exit = leader.wait(20)
        # The stopped member comes back (a Raft cluster of three needs two for the crash below).
        second = running[seen.second["instance"]]
        start(leader.name).wait_for(rf"leader is {second.name} \(term {seen.second['term']}\)", timeout=20)
        wait_until(lambda: term_stored(database, seen.second["term"]), 15, "the second leader stored nothing")

        seen.sigkill_at = second.signal(signal.SIGKILL)
        seen.third = next_start(journal, after=seen.sigkill_at, timeout=cluster.crash_bound + 20)
        wait_until(lambda: term_stored(database, seen.third["term"]), 15, "the third leader stored nothing")
        seen.statuses.append(status())
        seen.stale_refusals, seen.current_write = try_writes(database, seen.second, seen.third)
    finally:
        for instance in running.values():
            instance.stop()
    seen.journal = read_journal(journal)
    seen.rows_by_term = rows_by_term(database)
    return seen


def next_start(journal: Path, after: float, timeout: float) -> dict[str, Any]:
    """The first leadership that started after ``after`` (CLOCK_MONOTONIC, as the journal's)."""
    def started() -> dict[str, Any] | None:
        return next((entry for entry in read_journal(journal)
                     if entry["event"] == "start" and entry["mono"] > after), None)
    return wait_until(started, timeout, f"no leadership started in {journal}")


def term_stored(database: Path, term: int) -> bool:
    return term in rows_by_term(database)


def rows_by_term(database: Path) -> dict[int, set[str]]:
    import sqlite3

    with sqlite3.connect(database, timeout=5) as connection:
        try:
            rows = connection.execute("SELECT term, leader_id FROM weather").fetchall()
        except sqlite3.OperationalError:  # no table yet
            return {}
    terms: dict[int, set[str]] = {}
    for term, leader in rows:
        terms.setdefault(int(term), set()).add(leader)
    return terms


def try_writes(database: Path, stale: dict[str, Any], current: dict[str, Any]) -> tuple[list[str], int]:
    """Write as the killed leader (refused) and as the current one (accepted), with the store's
    own fencing check, as a leader that woke up late would."""
    store = SQLiteStore(str(database))
    reading = Reading("Conformance City", 30.0, 70, "late", datetime.now(timezone.utc))
    refusals = []
    try:
        for attempt in (lambda: store.register_term(stale["term"], stale["instance"]),
                        lambda: store.write([reading], stale["term"], stale["instance"])):
            try:
                attempt()
            except StaleTermError as exc:
                refusals.append(str(exc))
        written = store.write([reading], current["term"], current["instance"])
    finally:
        store.close()
    return refusals, written


# -- the properties, the same for every backend ---------------------------------------------------

def test_a_single_leader_acts_at_any_time(scenario: Scenario) -> None:
    intervals = acting_intervals(scenario)
    assert len(intervals) >= 3, f"expected three leaderships, journal: {scenario.journal}"
    for earlier, later in itertools.pairwise(intervals):
        assert later[0] >= earlier[1], f"two leaders acted at once: {earlier} and {later}"
    firsts = [e for e in scenario.journal if e["event"] == "start" and e["mono"] < scenario.sigterm_at]
    assert len(firsts) == 1, f"more than one leadership before the first stop: {firsts}"


def test_failover_on_graceful_stop(scenario: Scenario) -> None:
    took = scenario.second["mono"] - scenario.sigterm_at
    assert scenario.second["instance"] != scenario.first["instance"]
    assert scenario.sigterm_exit == 0
    assert took <= scenario.cluster.graceful_bound, (
        f"{scenario.cluster.backend}: graceful failover took {took:.2f} s (bound {scenario.cluster.graceful_bound} s)")


def test_failover_on_crash(scenario: Scenario) -> None:
    took = scenario.third["mono"] - scenario.sigkill_at
    assert scenario.third["instance"] != scenario.second["instance"]
    assert took <= scenario.cluster.crash_bound, (
        f"{scenario.cluster.backend}: crash failover took {took:.2f} s (bound {scenario.cluster.crash_bound} s)")


def test_terms_only_grow(scenario: Scenario) -> None:
    starts = sorted((e for e in scenario.journal if e["event"] == "start"), key=lambda e: e["mono"])
    terms = [e["term"] for e in starts]
    assert terms == sorted(set(terms)), f"terms did not strictly grow from one leadership to the next: {terms}"
    assert scenario.first["term"] < scenario.second["term"] < scenario.third["term"]
    for term, leaders in scenario.rows_by_term.items():
        assert len(leaders) == 1, f"term {term} written by {leaders}"


def test_the_fencing_check_refuses_a_stale_leaders_write(scenario: Scenario) -> None:
    assert len(scenario.stale_refusals) == 2, (
        f"a write with the killed leader's term {scenario.second['term']} was accepted: {scenario.stale_refusals}")
    assert all(str(scenario.third["term"]) in refusal for refusal in scenario.stale_refusals)
    assert scenario.current_write == 1  # the current leader's term is accepted


def test_every_instance_can_tell_who_leads(scenario: Scenario) -> None:
    assert set(scenario.workers_named) == set(MEMBERS) - {scenario.first["instance"]}
    for (code, status), leader in zip(scenario.statuses, (scenario.first, scenario.third), strict=True):
        assert code == 0, status
        assert status["backend"] == scenario.cluster.backend
        assert (status["leader_id"], status["term"]) == (leader["instance"], leader["term"]), status
        assert scenario.pids.get(status["leader_pid"]) == leader["instance"], status


def acting_intervals(scenario: Scenario) -> list[tuple[float, float, str, int]]:
    """(start, end of acting, member, term) per leadership; a SIGKILLed one ends at the kill."""
    stops = {(e["pid"], e["term"]): e["acting_until"] for e in scenario.journal if e["event"] == "stop"}
    intervals = []
    for entry in scenario.journal:
        if entry["event"] == "start":
            end = stops.get((entry["pid"], entry["term"]), scenario.sigkill_at)
            intervals.append((entry["mono"], end, entry["instance"], entry["term"]))
    return sorted(intervals)
