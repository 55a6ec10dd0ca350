"""Three demo instances on ELECTION_BACKEND=postgres with the default timing (a 5 s lease by the
server's clock) and the readings in PostgreSQL (POSTGRES_STORE=true, the same database): what the
issue asks of them, from evidence outside the instances (the journal's CLOCK_MONOTONIC times, the
database's rows, the server's clock on each row):

    SIGSTOP the leader past its lease, SIGCONT it   another leads; nothing the paused one wrote
                                                    after that was accepted; a write with its term
                                                    is refused by the store, and by the lease row
    SIGTERM the leader                              another leads in well under a second (NOTIFY)
    SIGKILL the leader                              another leads within a few seconds
    --status                                        names the leader, its term and its pid

One scenario (about 25 s); each test checks one property of it. It runs once direct and once
through PgBouncer in transaction pooling mode (POSTGRES_POOLED, a direct POSTGRES_NOTIFY_URL).
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import psycopg
import pytest

from distributed_mutex_demo.stores.postgres import PostgresStore
from distributed_mutex_demo.weather import Reading
from DistributedMutex.backends.postgres.fencing import leased_transaction
from DistributedMutex.errors import StaleTermError
from DistributedMutex.journal import read_journal
from harness.clusters import MEMBERS, PostgresCluster
from harness.fake_openweather import FakeOpenWeather
from harness.postgres import PostgresServer, with_database
from harness.processes import SCRIPT, Instance, wait_until

LEASES = "distributed_mutex_leases"
STORED = r"stored \d+ readings"


@dataclass
class Run:
    cluster: PostgresCluster
    database: str
    starts: list[dict[str, Any]] = field(default_factory=list)
    paused_at: float = 0.0
    resumed_at: float = 0.0
    sigterm_at: float = 0.0
    sigkill_at: float = 0.0
    status: tuple[int, dict[str, Any]] = (0, {})
    pids: dict[int, str] = field(default_factory=dict)
    rows: list[tuple[int, str, datetime]] = field(default_factory=list)  # (term, leader, stored_at)
    stale_refusal: str = ""  # the store's refusal of a write with the deposed leader's term
    lease_refusal: str = ""  # the lease row's refusal of the same write, with no term row to check
    resumed_output: str = ""


@pytest.fixture(scope="module", params=["direct", "pgbouncer"])
def run(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
        postgres_server: PostgresServer, weather_server: FakeOpenWeather) -> Iterator[Run]:
    database = postgres_server.create_database()
    direct = with_database(postgres_server.url, database)
    if request.param == "pgbouncer":
        bouncer = request.getfixturevalue("pgbouncer")
        cluster = PostgresCluster(bouncer.url_for(database), table=LEASES, notify_url=direct, pooled=True)
    else:
        cluster = PostgresCluster(direct, table=LEASES)
    try:
        yield scenario(cluster, database, direct, tmp_path_factory.mktemp(f"pg-{request.param}"), weather_server)
    finally:
        postgres_server.drop_database(database)


def scenario(cluster: PostgresCluster, database: str, direct: str, workdir: Path,
             weather: FakeOpenWeather) -> Run:
    journal = workdir / "leadership.jsonl"
    base = {"POSTGRES_STORE": "true", "LEADERSHIP_JOURNAL": str(journal), "OPENWEATHER_API_KEY": weather.api_key,
            "OPENWEATHER_URL": weather.url, "WEATHER_CITIES": "Hanoi,Tokyo", "FETCH_INTERVAL": "1",
            "READ_INTERVAL": "0.5", "LOG_LEVEL": "INFO"}
    seen = Run(cluster, database)
    running: dict[str, Instance] = {}

    def start(name: str) -> Instance:
        instance = Instance(name, {**base, **cluster.env_for(name)}, workdir)
        running[name], seen.pids[instance.process.pid] = instance, name
        return instance

    def next_start(after: float, timeout: float) -> dict[str, Any]:
        found = wait_until(lambda: next((e for e in read_journal(journal)
                                         if e["event"] == "start" and e["mono"] > after), None),
                           timeout, f"no leadership started within {timeout:g} s")
        seen.starts.append(found)
        return found

    try:
        for name in MEMBERS:
            start(name)
        first = next_start(0.0, 30)
        leader = running[first["instance"]]
        leader.wait_for(STORED, timeout=15)

        # Paused past its lease: another leads; resumed, it must write nothing that is accepted.
        seen.paused_at = leader.signal(signal.SIGSTOP)
        second = next_start(seen.paused_at, cluster.crash_bound + 10)
        successor = running[second["instance"]]
        successor.wait_for(STORED, timeout=15, after=seen.paused_at)
        seen.resumed_at = leader.signal(signal.SIGCONT)
        leader.wait_for(r"lost leadership|stepping down|step down", timeout=15, after=seen.resumed_at)
        successor.wait_for(STORED, timeout=15, after=time.monotonic())  # one more round after the resume
        seen.resumed_output = "\n".join(line.text for line in leader.lines if line.at >= seen.resumed_at)
        seen.stale_refusal = stale_write(direct, first)
        seen.lease_refusal = lease_refused_write(direct, first)

        seen.status = status(base, cluster)
        seen.sigterm_at = successor.signal(signal.SIGTERM)
        third = next_start(seen.sigterm_at, cluster.graceful_bound + 10)
        assert successor.wait(15) == 0
        running[third["instance"]].wait_for(STORED, timeout=15, after=seen.sigterm_at)

        seen.sigkill_at = running[third["instance"]].signal(signal.SIGKILL)
        fourth = next_start(seen.sigkill_at, cluster.crash_bound + 10)
        running[fourth["instance"]].wait_for(STORED, timeout=15, after=seen.sigkill_at)
    finally:
        for instance in running.values():
            if instance.process.poll() is None:
                instance.process.send_signal(signal.SIGCONT)
            instance.stop()
    seen.rows = [(int(t), lid, at) for t, lid, at in
                 PostgresServer(direct).execute("SELECT term, leader_id, stored_at FROM weather")]
    return seen


def stale_write(url: str, deposed: dict[str, Any]) -> str:
    store = PostgresStore(url, lease=(LEASES, "weather-leader"))
    try:
        store.write([Reading("Late City", 1.0, 1, "late", datetime.now(timezone.utc))], deposed["term"],
                    deposed["instance"])
    except StaleTermError as exc:
        return str(exc)
    finally:
        store.close()
    return ""


def lease_refused_write(url: str, deposed: dict[str, Any]) -> str:
    """The store's term rule refuses the deposed leader before its lease row is checked (that check
    comes last, with the COMMIT): write with the lease row's check alone to see it refuse too."""
    with psycopg.connect(url, autocommit=True) as connection:
        try:
            with leased_transaction(connection, "weather-leader", deposed["instance"], deposed["term"],
                                    table=LEASES) as cursor:
                cursor.execute("INSERT INTO weather (city, temperature, humidity, description, observed_at, leader_id,"
                               " term, stored_at) VALUES ('Late City', 1, 1, 'late', clock_timestamp(), %s, %s,"
                               " clock_timestamp())", (deposed["instance"], deposed["term"]))
        except StaleTermError as exc:
            return str(exc)
    return ""


def status(base: dict[str, str], cluster: PostgresCluster) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([sys.executable, str(SCRIPT), "--status"], capture_output=True, text=True, timeout=30,
                          env={**Instance.clean_environment(), **base, **cluster.env_for(MEMBERS[0])})
    assert done.stdout.strip(), f"--status printed nothing (exit {done.returncode}): {done.stderr}"
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def test_a_paused_leader_resumed_after_its_lease_writes_nothing_that_is_accepted(run: Run) -> None:
    first, second = run.starts[0], run.starts[1]
    assert second["instance"] != first["instance"] and second["term"] > first["term"]
    old = [at for term, _, at in run.rows if term == first["term"]]
    new = [at for term, _, at in run.rows if term == second["term"]]
    assert old and new, run.rows
    # (the rows are read last: this also covers the writes of stale_write and lease_refused_write)
    assert max(old) < min(new), "a row of the paused leader's term was stored after its successor's first"
    assert not re.search(STORED, run.resumed_output), f"the resumed leader stored readings:\n{run.resumed_output}"
    assert f"this leader has term {first['term']}" in run.stale_refusal, (
        f"a write with the deposed leader's term {first['term']} was not refused by the store: {run.stale_refusal!r}")
    assert f"is in term {second['term']} (held by '{second['instance']}')" in run.lease_refusal, (
        f"a write with the deposed leader's term {first['term']} was not refused by the lease row: "
        f"{run.lease_refusal!r}")


def test_sigterm_hands_over_in_well_under_a_second(run: Run) -> None:
    took = run.starts[2]["mono"] - run.sigterm_at
    print(f"\n{run.cluster.url.split('@')[-1]}: graceful failover {took:.3f} s")
    assert took < 1.0, f"graceful failover took {took:.2f} s"


def test_sigkill_fails_over_within_a_few_seconds(run: Run) -> None:
    took = run.starts[3]["mono"] - run.sigkill_at
    print(f"\n{run.cluster.url.split('@')[-1]}: crash failover {took:.3f} s")
    assert took <= run.cluster.crash_bound, f"crash failover took {took:.2f} s"


def test_status_names_the_leader(run: Run) -> None:
    code, answer = run.status
    leader = run.starts[1]
    assert code == 0 and answer["backend"] == "postgres", answer
    assert (answer["leader_id"], answer["term"]) == (leader["instance"], leader["term"]), answer
    assert run.pids.get(answer["leader_pid"]) == leader["instance"], answer
