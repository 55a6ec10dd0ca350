"""The demo with its embedded defaults, as real processes: no OPENWEATHER_API_KEY means Open-Meteo,
no MYSQL_HOST means a SQLite file in the directory the program runs in; and each mix of provider
and store records the provider in every row and shows it in the workers' table."""

from __future__ import annotations

import re
import signal
import sqlite3
from pathlib import Path

import pytest

from harness.fake_open_meteo import WEATHER_CODES, FakeOpenMeteo
from harness.processes import Instance, wait_until
from harness.services import Azurite

LEADER = r"became leader \(term (\d+)\)"
CITIES = ("Hanoi", "Tokyo", "London")


def term_of(instance: Instance) -> int:
    line = instance.find(LEADER)
    assert line is not None
    return int(re.search(LEADER, line.text).group(1))


def description(city: str) -> str:
    """What the stand-in's weather code for ``city`` must be shown as."""
    return WEATHER_CODES[sum(map(ord, city)) % len(WEATHER_CODES)][1]


def table_line(city: str, text: str, provider: str, leader: str, term: int) -> str:
    return (rf"^{city}\s+-?\d+\.\d°C\s+\d+%\s+{re.escape(text)}\s+{provider}\s+\d{{4}}-\d\d-\d\d \d\d:\d\d\s+\S+"
            rf"\s+{leader}\s+{term}$")


def sqlite_rows(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as connection:
        return connection.execute(sql).fetchall()


@pytest.fixture
def embedded_env(azurite: Azurite, container_name: str, open_meteo: FakeOpenMeteo) -> dict[str, str]:
    """Only the lease storage and where Open-Meteo is: no key, no MYSQL_*, no SQLITE_PATH."""
    open_meteo.interval = 1  # a new observation every second, so that each leader stores its own rows
    return {
        "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "CONTAINER_NAME": container_name,
        "ACQUIRE_INTERVAL": "0.5",
        "WEATHER_CITIES": ",".join(CITIES),
        "FETCH_INTERVAL": "1",
        "READ_INTERVAL": "0.5",
        **open_meteo.env(),
    }


def test_without_a_key_or_mysql_host_it_runs_on_open_meteo_and_a_local_sqlite_file(
        spawn, embedded_env, open_meteo: FakeOpenMeteo, tmp_path: Path) -> None:
    database = tmp_path / "weather.sqlite3"  # SQLITE_PATH's default, in the directory it runs in
    first = spawn("first", embedded_env)
    first.wait_for(rf"weather from Open-Meteo, readings stored in SQLite at {re.escape(str(database))}$", timeout=15)
    first.wait_for(LEADER, timeout=15)
    term = term_of(first)
    first.wait_for(rf"stored 3 readings \(3 new\) as leader of term {term}", timeout=10)
    second = spawn("second", embedded_env)
    second.wait_for(rf"leader is first \(term {term}\)", timeout=10)
    for city in CITIES:
        second.wait_for(table_line(city, description(city), "open-meteo", "first", term), timeout=10)

    stopped = first.signal(signal.SIGTERM)
    assert first.wait(5) == 0, first.tail()
    second.wait_for(LEADER, timeout=5, after=stopped)
    new_term = term_of(second)
    assert new_term > term
    # Its first round may refetch the observations its predecessor stored last (stored once): wait for its own.
    wait_until(lambda: sqlite_rows(database, f"SELECT COUNT(*) FROM weather WHERE term = {new_term}")[0][0] >= 3, 10,
               f"no rows of term {new_term}")

    rows = sqlite_rows(database, "SELECT term, leader_id, provider FROM weather ORDER BY id")
    assert {provider for _, _, provider in rows} == {"open-meteo"}
    assert [t for t, _, _ in rows] == sorted(t for t, _, _ in rows)  # no older term after a newer one
    assert {(t, leader) for t, leader, _ in rows} == {(term, "first"), (new_term, "second")}
    assert sqlite_rows(database, "SELECT term, leader_id FROM leader_term") == [(new_term, "second")]
    # Each of the two leaders looked each city up once; the forecasts came every round.
    for city in CITIES:
        assert open_meteo.answered(city, "geocoding") == 2
        assert open_meteo.answered(city, "forecast") >= 2
    assert first.count(r"became leader") == 1 and second.count(r"became leader") == 1
    for instance in (first, second):
        assert "Traceback" not in instance.output


@pytest.mark.parametrize("mix", ["open-meteo+mysql", "openweathermap+sqlite"])
def test_each_row_records_its_provider_in_either_store(spawn, demo_env, open_meteo: FakeOpenMeteo, mysql_server,
                                                       database: str, tmp_path: Path, mix: str) -> None:
    provider, store = mix.split("+")
    env = dict(demo_env)
    if provider == "open-meteo":
        del env["OPENWEATHER_API_KEY"]
        env.update(open_meteo.env())
    if store == "sqlite":
        env = {k: v for k, v in env.items() if not k.startswith("MYSQL_")}
    leader = spawn("leader", env)
    shown = "Open-Meteo" if provider == "open-meteo" else "OpenWeatherMap"
    where = rf"SQLite at {re.escape(str(tmp_path))}/weather\.sqlite3" if store == "sqlite" else \
        rf"MySQL at {mysql_server.host}:{mysql_server.port}, database {database}"
    leader.wait_for(rf"weather from {shown}, readings stored in {where}$", timeout=15)
    leader.wait_for(LEADER, timeout=15)
    term = term_of(leader)
    leader.wait_for(r"stored 3 readings \(3 new\)", timeout=10)
    worker = spawn("worker", env)
    for city in CITIES:
        text = description(city) if provider == "open-meteo" else "scattered clouds"
        worker.wait_for(table_line(city, text, provider, "leader", term), timeout=10)
    if store == "sqlite":
        rows = sqlite_rows(tmp_path / "weather.sqlite3", "SELECT DISTINCT provider FROM weather")
    else:
        rows = mysql_server.query(database, "SELECT DISTINCT provider FROM weather")
        assert not (tmp_path / "weather.sqlite3").exists()
    assert rows == [(provider,)]
    wait_until(lambda: worker.count(r"^city\s+temp\s+humidity\s+description\s+provider\s+observed") >= 2, 5,
               "the worker did not print its table twice")
    assert worker.count(r"became leader") == 0
