"""The demo on Redis (ELECTION_BACKEND=redis, default timing: a 5 s lease), as real processes:

    pause       a leader SIGSTOPped past its lease and resumed writes nothing the store accepts
    CLIENT KILL the leader's connections killed from the server side: it reconnects and keeps leading
    reset       the server restarted without its data mid-run: the old leader steps down, the next
                one waits out the old lease, terms keep growing, one writer per term
    bad input   docs/bad-input.md's runtime Redis rows (a refused password, nothing listening)

Crash and graceful failover are the conformance suite's (test_conformance.py).
"""

from __future__ import annotations

import itertools
import signal
import sqlite3
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import redis

from distributed_mutex_demo.stores.sqlite import SQLiteStore
from distributed_mutex_demo.weather import Reading
from DistributedMutex.errors import StaleTermError
from DistributedMutex.journal import read_journal
from harness.clusters import MEMBERS
from harness.fake_openweather import FakeOpenWeather
from harness.processes import Instance, wait_until
from harness.redis_server import RedisServer, delete_prefix, new_prefix
from harness.services import free_port
from support.bad_input import REDIS_SECRET, assert_keeps_running_with, assert_stops_with

LEASE = 5.0  # the backend's default, which these instances run with


@dataclass
class Demo:
    """Three instances on one election, their journal and SQLite store."""

    url: str
    workdir: Path
    weather: FakeOpenWeather
    prefix: str = field(default_factory=lambda: new_prefix("demo"))
    running: dict[str, Instance] = field(default_factory=dict)

    @property
    def journal(self) -> Path:
        return self.workdir / "leadership.jsonl"

    @property
    def database(self) -> Path:
        return self.workdir / "weather.sqlite3"

    def env(self) -> dict[str, str]:
        return {"ELECTION_BACKEND": "redis", "REDIS_URL": self.url, "REDIS_KEY_PREFIX": self.prefix,
                "SQLITE_PATH": str(self.database), "LEADERSHIP_JOURNAL": str(self.journal),
                "OPENWEATHER_API_KEY": self.weather.api_key, "OPENWEATHER_URL": self.weather.url,
                "WEATHER_CITIES": "Hanoi,Tokyo", "FETCH_INTERVAL": "1", "READ_INTERVAL": "0.5"}

    def start_all(self) -> dict[str, Any]:
        for name in MEMBERS:
            self.running[name] = Instance(name, self.env(), self.workdir)
        return self.next_start(after=0.0, timeout=30)

    def next_start(self, after: float, timeout: float) -> dict[str, Any]:
        def started() -> dict[str, Any] | None:
            return next((e for e in read_journal(self.journal) if e["event"] == "start" and e["mono"] > after), None)
        return wait_until(started, timeout, f"no leadership started after {after:.2f} in {self.journal}")

    def rows(self) -> list[tuple[int, int, str]]:
        """(rowid, term, leader) of every stored reading, in insertion order."""
        with sqlite3.connect(self.database, timeout=5) as connection:
            try:
                return connection.execute("SELECT rowid, term, leader_id FROM weather ORDER BY rowid").fetchall()
            except sqlite3.OperationalError:
                return []

    def stored(self, term: int) -> bool:
        return any(row[1] == term for row in self.rows())

    def stop(self) -> None:
        for instance in self.running.values():
            instance.stop()


@pytest.fixture
def demo(redis_url: str, tmp_path: Path, weather: FakeOpenWeather) -> Iterator[Demo]:
    made = Demo(redis_url, tmp_path, weather)
    yield made
    made.stop()
    delete_prefix(redis_url, made.prefix)


def assert_one_leader_at_a_time_and_terms_in_order(demo: Demo, paused_until: float = 0.0) -> None:
    journal = read_journal(demo.journal)
    stops = {(e["pid"], e["term"]): e["acting_until"] for e in journal if e["event"] == "stop"}
    starts = sorted((e for e in journal if e["event"] == "start"), key=lambda e: e["mono"])
    terms = [e["term"] for e in starts]
    assert terms == sorted(set(terms)), f"terms did not strictly grow: {terms}"
    for earlier, later in itertools.pairwise(starts):
        ended = stops.get((earlier["pid"], earlier["term"]), paused_until or float("inf"))
        assert later["mono"] >= ended, f"{earlier['instance']} (term {earlier['term']}) still acted when " \
                                       f"{later['instance']} (term {later['term']}) started"
    rows = demo.rows()
    newest = 0
    for rowid, term, _ in rows:
        assert term >= newest, f"row {rowid} of term {term} stored after a row of term {newest}"
        newest = term
    writers: dict[int, set[str]] = {}
    for _, term, leader in rows:
        writers.setdefault(term, set()).add(leader)
    assert all(len(names) == 1 for names in writers.values()), f"a term written by two leaders: {writers}"


def test_a_leader_paused_past_its_lease_writes_nothing_the_store_accepts(demo: Demo) -> None:
    first = demo.start_all()
    leader = demo.running[first["instance"]]
    wait_until(lambda: demo.stored(first["term"]), 15, "the first leader stored nothing")

    paused_at = leader.signal(signal.SIGSTOP)
    second = demo.next_start(after=paused_at, timeout=LEASE + 10)
    took = second["mono"] - paused_at
    assert second["instance"] != leader.name and second["term"] > first["term"]
    assert took <= LEASE + 1.5, f"the next leader took {took:.2f} s after the pause (lease {LEASE:g} s)"
    wait_until(lambda: demo.stored(second["term"]), 15, "the second leader stored nothing")

    resumed_at = leader.signal(signal.SIGCONT)
    leader.wait_for(r"lost leadership: ", timeout=10, after=resumed_at)
    time.sleep(1.5)  # its next fetch round, had it kept acting (FETCH_INTERVAL 1 s)
    assert_one_leader_at_a_time_and_terms_in_order(demo, paused_until=resumed_at)
    late = [row for row in demo.rows() if row[1] == first["term"]]
    first_of_second = min(row[0] for row in demo.rows() if row[1] == second["term"])
    assert all(rowid < first_of_second for rowid, _, _ in late), "the resumed leader's rows were accepted"

    store = SQLiteStore(str(demo.database))
    try:
        reading = Reading("Paused City", 20.0, 50, "late", datetime.now(timezone.utc))
        with pytest.raises(StaleTermError):
            store.write([reading], first["term"], first["instance"])
    finally:
        store.close()


def test_client_kill_of_the_leaders_connections_does_not_end_its_leadership(demo: Demo) -> None:
    first = demo.start_all()
    admin = redis.Redis.from_url(demo.url, decode_responses=True)
    try:
        holder = admin.get("{" + demo.prefix + "}:lease")
        assert holder is not None
        owner = holder.split(":")[0]
        connections = [c for c in admin.client_list() if c["name"] == f"distributed-mutex:{owner}"]
        assert connections, "the leader's connections are not named after its owner id"
        killed_at = time.monotonic()
        for connection in connections:
            admin.client_kill_filter(_id=connection["id"])
        time.sleep(LEASE)  # longer than its lease: a leader that could not reconnect would be gone
        assert admin.get("{" + demo.prefix + "}:lease") == holder, "the leader lost its lease"
    finally:
        admin.close()
    leader = demo.running[first["instance"]]
    assert leader.process.poll() is None, leader.tail()
    assert not [e for e in read_journal(demo.journal) if e["event"] == "start" and e["mono"] > killed_at]
    assert "Traceback" not in leader.output


def test_a_server_restart_without_its_data_mid_run_keeps_one_leader_and_growing_terms(
        redis_server: RedisServer, tmp_path: Path, weather: FakeOpenWeather) -> None:
    demo = Demo(redis_server.url, tmp_path, weather)
    try:
        first = demo.start_all()
        wait_until(lambda: demo.stored(first["term"]), 15, "the first leader stored nothing")
        for name, instance in demo.running.items():  # every instance has seen the term
            if name != first["instance"]:
                instance.wait_for(rf"leader is {first['instance']} \(term {first['term']}\)", timeout=15)
        restarted_at = time.monotonic()
        redis_server.restart()  # every key gone: the lease, the term counter, the leader record
        second = demo.next_start(after=restarted_at, timeout=2 * LEASE + 10)
        assert second["term"] > first["term"], "the term repeated"
        wait_until(lambda: demo.stored(second["term"]), 15, "the leader after the restart stored nothing")
        assert_one_leader_at_a_time_and_terms_in_order(demo)
        assert any("had forgotten the election" in instance.output for instance in demo.running.values())
    finally:
        demo.stop()


def test_a_refused_password_stops_the_instance_in_one_line(tmp_path: Path, weather: FakeOpenWeather) -> None:
    server = RedisServer(password="Server-Pass-1").start()
    try:
        url = f"redis://:{REDIS_SECRET}@127.0.0.1:{server.port}/0"
        demo = Demo(url, tmp_path, weather)
        instance = Instance("node-a", demo.env(), tmp_path)
        assert_stops_with(instance, "redis-password-refused", url=f"redis://:***@127.0.0.1:{server.port}/0")
    finally:
        server.cleanup()


def test_nothing_listening_is_a_warning_and_the_instance_keeps_trying(tmp_path: Path,
                                                                       weather: FakeOpenWeather) -> None:
    url = f"redis://:{REDIS_SECRET}@127.0.0.1:{free_port()}/0"
    instance = Instance("node-a", Demo(url, tmp_path, weather).env(), tmp_path)
    try:
        assert_keeps_running_with(instance, "redis-unreachable", url=url.replace(REDIS_SECRET, "***"))
    finally:
        instance.stop()
