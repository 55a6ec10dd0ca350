"""The SQLite store across processes: WAL, the busy timeout, and the fencing check under BEGIN
IMMEDIATE (tests/test_store.py runs the behaviours it shares with the MySQL store on both)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from distributed_mutex_demo.errors import StoreAccessError, StoreUnavailableError
from distributed_mutex_demo.stores.sqlite import SQLiteStore
from distributed_mutex_demo.weather import Reading
from DistributedMutex.errors import StaleTermError
from harness.processes import ROOT

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=timezone.utc)


def reading(city: str, minutes: int = 0) -> Reading:
    return Reading(city, 20.0, 50, "clear sky", T0 + timedelta(minutes=minutes), "open-meteo")


def writer(path: Path, *args: str) -> subprocess.Popen[str]:
    """support/sqlite_writer.py in its own process (a leader on the same machine)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]))
    return subprocess.Popen([sys.executable, "-m", "support.sqlite_writer", str(path), *args], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def read_line(process: subprocess.Popen[str], timeout: float = 20) -> str:
    """The process's next output line, waiting at most ``timeout``."""
    result: list[str] = []
    reader = threading.Thread(target=lambda: result.append(process.stdout.readline()), daemon=True)
    reader.start()
    reader.join(timeout)
    assert result and result[0], f"no line within {timeout} s (stderr: {process.stderr.read() if process.poll() is not None else ''})"
    return result[0].strip()


def rows(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as connection:
        return connection.execute(sql).fetchall()


def test_a_stale_leader_in_another_process_is_fenced(tmp_path: Path) -> None:
    path = tmp_path / "weather.sqlite3"
    old = writer(path, "hold", "1")
    try:
        assert read_line(old) == "inside"  # term 1's write holds the write lock, not committed yet
        new = SQLiteStore(str(path))
        registered = threading.Event()
        registration = threading.Thread(target=lambda: (new.register_term(2, "new"), registered.set()), daemon=True)
        registration.start()
        # The successor's registration waits for the lock (busy_timeout), it does not fail...
        assert not registered.wait(0.5), "the registration did not wait for the write in progress"
        old.stdin.write("commit\n")
        old.stdin.flush()
        assert registered.wait(10), "the registration did not go through after the commit"
        # ...so the write in flight is ordered before the new term, and the next one is refused.
        assert read_line(old) == "committed 1"
        old.stdin.write("again\n")
        old.stdin.flush()
        assert read_line(old) == "refused: write refused by the fencing check: the store has term 2, this leader has term 1"
        assert old.wait(10) == 0
        assert new.write([reading("Hanoi", 2)], 2, "new") == 1
        assert rows(path, "SELECT term, leader_id FROM weather ORDER BY id") == [(1, "holder-1"), (2, "new")]
        new.close()
    finally:
        old.kill()
        old.wait()


@pytest.mark.parametrize("terms", [(3, 3, 3, 3), (1, 2, 3, 4)], ids=["same-term", "rising-terms"])
def test_racing_processes_never_see_database_is_locked_and_never_break_the_fencing(tmp_path: Path,
                                                                                  terms: tuple[int, ...]) -> None:
    path = tmp_path / "weather.sqlite3"
    SQLiteStore(str(path)).check_access()  # the file exists before they race
    rounds = 40
    racers = [writer(path, "race", str(term), str(rounds)) for term in terms]
    try:
        for racer in racers:
            racer.stdin.write("go\n")
            racer.stdin.flush()
        results = [json.loads(read_line(racer, timeout=60)) for racer in racers]
        assert [racer.wait(10) for racer in racers] == [0] * len(racers)
    finally:
        for racer in racers:
            racer.kill()
            racer.wait()
    assert [r["busy"] for r in results] == [[]] * len(racers), "a writer gave up on the lock"
    stored = rows(path, "SELECT term FROM weather ORDER BY id")
    assert len(stored) == sum(r["written"] for r in results)
    # The fencing: in insertion order, no row of a lower term after one of a higher term.
    assert [t for (t,) in stored] == sorted(t for (t,) in stored)
    assert rows(path, "SELECT term FROM leader_term") == [(max(terms),)]
    if len(set(terms)) == 1:
        assert all(r["written"] == rounds and not r["refused"] for r in results)
    else:
        newest = results[terms.index(max(terms))]
        assert newest["written"] == rounds and not newest["refused"]  # the newest leader is never fenced


def test_a_lock_held_longer_than_the_busy_timeout_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "weather.sqlite3"
    store = SQLiteStore(str(path), busy_timeout=0.3)
    store.register_term(1, "a")
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another process writing, and writing, and writing
    try:
        with pytest.raises(StoreUnavailableError) as caught:
            store.write([reading("Hanoi")], 1, "a")
        assert str(caught.value) == (f"SQLite database {path} is busy: another process held its write lock "
                                     "for over 0.3 s")
        assert store.latest() == []  # readers are not blocked by the writer (WAL)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert store.write([reading("Hanoi")], 1, "a") == 1  # and it goes on once the lock is free
    store.close()


def test_the_file_is_in_wal_mode_with_the_mysql_tables(tmp_path: Path) -> None:
    path = tmp_path / "weather.sqlite3"
    store = SQLiteStore(str(path))
    store.check_access()
    assert rows(path, "PRAGMA journal_mode") == [("wal",)]
    columns = [row[1] for row in rows(path, "PRAGMA table_info(weather)")]
    assert columns == ["id", "city", "temperature", "humidity", "description", "observed_at", "leader_id", "term",
                       "stored_at", "provider"]
    assert rows(path, "SELECT id, term, leader_id FROM leader_term") == [(1, 0, "")]
    store.close()


def test_a_relative_path_is_the_current_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    store = SQLiteStore("weather.sqlite3")
    store.check_access()
    assert store.description == f"SQLite at {tmp_path / 'weather.sqlite3'}"
    assert (tmp_path / "weather.sqlite3").is_file()
    store.close()


@pytest.mark.parametrize(("make", "message"), [
    (lambda d: d / "no-such-dir" / "w.db", "SQLite database {p}: its directory {d}/no-such-dir does not exist: "
                                           "create it or change SQLITE_PATH"),
    (lambda d: d, "SQLite database {p}: is a directory: SQLITE_PATH must name a file"),
    (lambda d: d / "notes.txt", "SQLite database {p}: is not an SQLite database (file is not a database): "
                                "check SQLITE_PATH"),
], ids=["missing-directory", "a-directory", "not-a-database"])
def test_an_unusable_path_is_an_access_error_naming_the_setting(tmp_path: Path, make, message: str) -> None:
    (tmp_path / "notes.txt").write_text("these are not the tables you are looking for\n" * 200)
    path = make(tmp_path)
    store = SQLiteStore(str(path))
    with pytest.raises(StoreAccessError) as caught:
        store.check_access()
    assert str(caught.value) == message.format(p=path, d=tmp_path)
    assert (tmp_path / "notes.txt").read_text().startswith("these are not")  # left as it was
    store.close()


def test_stored_at_is_sqlites_clock_in_utc(tmp_path: Path) -> None:
    path = tmp_path / "weather.sqlite3"
    store = SQLiteStore(str(path))
    store.register_term(1, "a")
    before = datetime.now(timezone.utc).replace(tzinfo=None)
    store.write([reading("Hanoi")], 1, "a")
    after = datetime.now(timezone.utc).replace(tzinfo=None)
    [(stored_at, observed_at)] = rows(path, "SELECT stored_at, observed_at FROM weather")
    assert observed_at == "2026-11-26 10:00:00"
    stamp = datetime.strptime(stored_at, "%Y-%m-%d %H:%M:%S.%f")
    assert before - timedelta(seconds=1) <= stamp <= after + timedelta(seconds=1)
    store.close()


def test_a_refused_write_leaves_nothing_behind(tmp_path: Path) -> None:
    path = tmp_path / "weather.sqlite3"
    store = SQLiteStore(str(path))
    store.register_term(5, "new")
    with pytest.raises(StaleTermError):
        store.write([reading("Hanoi"), reading("Tokyo")], 4, "old")
    assert rows(path, "SELECT COUNT(*) FROM weather") == [(0,)]
    # and the lock was let go: another connection can write at once
    other = sqlite3.connect(path, isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")
    other.execute("ROLLBACK")
    other.close()
    store.close()
