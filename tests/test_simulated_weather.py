"""The simulated station (WEATHER_SIMULATION): offline, the demo still writes, reads and fences.

The station itself is a pure function of (city, time), checked here directly; the rest runs as the
demo does: real processes, real Azurite and SQLite or MariaDB, a weather provider that cannot be
reached (a closed local port, or the Open-Meteo stand-in behind a proxy that is down, then up).
"""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from distributed_mutex_demo.app import WeatherApp
from distributed_mutex_demo.open_meteo import OpenMeteoClient
from distributed_mutex_demo.simulated_weather import simulate
from distributed_mutex_demo.stores.sqlite import SQLiteStore
from harness.fake_open_meteo import FakeOpenMeteo
from harness.processes import wait_until
from harness.services import Azurite, free_port
from harness.tcpproxy import TcpProxy
from support.leader_loop import run_leader_until

CITIES = ("Hanoi", "Tokyo", "London")
LEADER = r"became leader \(term (\d+)\)"
UNAVAILABLE = (r"Open-Meteo unavailable: request for 'Hanoi' failed \(ConnectionError\): using the simulated "
               r"station \(made-up values, provider 'simulated'\) until it answers; asking it again in 2 s")
BACK = r"Open-Meteo answers again: real readings from now on, the simulated station is off"


# -- the station -----------------------------------------------------------------------------------

def test_the_station_is_deterministic_labelled_and_plausible() -> None:
    noon = datetime(2026, 7, 15, 5, 0, 12, 345678, tzinfo=timezone.utc)  # 12:00 in Hanoi
    reading = simulate("Hanoi", noon)
    assert reading == simulate("Hanoi", noon)
    assert simulate(" hanoi ", noon).temperature == reading.temperature  # the name's case and spaces do not matter
    assert reading.provider == "simulated" and reading.description.startswith("simulated: ")
    assert reading.observed_at == noon.replace(microsecond=0)  # whole seconds, as MySQL's DATETIME keeps
    day = [simulate(city, noon + timedelta(hours=h)) for city in ("Hanoi", "London", "Sydney", "Atlantis")
           for h in range(0, 24 * 7)]
    assert all(-30 <= r.temperature <= 45 and 5 <= r.humidity <= 100 for r in day)
    hanoi = [r.temperature for r in day[:24]]
    assert max(hanoi) - min(hanoi) >= 4, "no daily cycle"  # and it changes with time
    assert 24 <= sum(hanoi) / 24 <= 34, "Hanoi in July is hot"
    # The seasons: London is warmer in July than in January, Sydney the other way round.
    january = noon.replace(month=1)

    def mean(city: str, at: datetime) -> float:
        return sum(simulate(city, at + timedelta(hours=h)).temperature for h in range(24)) / 24

    assert mean("London", noon) > mean("London", january) + 8
    assert mean("Sydney", january) > mean("Sydney", noon) + 5
    assert 5 <= mean("Atlantis", noon) <= 30  # a city it does not know: a temperate default
    assert len({simulate("Paris", noon + timedelta(minutes=m)).temperature for m in range(0, 600, 60)}) > 3


# -- in one process: fencing still refuses a deposed leader's (simulated) writes ------------------

def test_offline_a_deposed_leaders_write_is_refused(tmp_path: Path, caplog) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    store = SQLiteStore(str(tmp_path / "weather.sqlite3"))
    client = OpenMeteoClient(f"{dead}/v1/search", f"{dead}/v1/forecast", timeout=(0.5, 0.5))
    caplog.set_level(logging.INFO, logger="distributed_mutex_demo")
    app = WeatherApp(client, store, CITIES, fetch_interval=0.5, read_interval=1)

    def messages() -> list[str]:
        return [r.getMessage() for r in caplog.records]

    def refused_after_a_successor() -> bool:
        if any("stored 3 readings (3 new, 3 simulated) as leader of term 1" in m for m in messages()):
            store.register_term(2, "successor")  # a new leader, as after a pause past the lease
        return any(re.search(r"dropping \d+ readings", m) for m in messages())

    try:
        asyncio.run(run_leader_until(app, refused_after_a_successor, timeout=15))
    finally:
        client.close()
    assert {(r.term, r.provider) for r in store.latest()} == {(1, "simulated")}
    assert store.stored_term() == 2
    store.close()


# -- real processes --------------------------------------------------------------------------------

def sqlite_rows(path: Path, sql: str) -> list[tuple]:
    with sqlite3.connect(path) as connection:
        return connection.execute(sql).fetchall()


@pytest.fixture
def offline_env(azurite: Azurite, container_name: str) -> dict[str, str]:
    return {
        "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "CONTAINER_NAME": container_name,
        "ACQUIRE_INTERVAL": "0.5",
        "WEATHER_CITIES": ",".join(CITIES),
        "FETCH_INTERVAL": "1",
        "READ_INTERVAL": "0.5",
    }


def test_offline_the_demo_writes_and_reads_simulated_rows_then_uses_the_provider_again(
        spawn, offline_env, open_meteo: FakeOpenMeteo, tmp_path: Path) -> None:
    open_meteo.interval = 1  # a new observation every second
    proxy = TcpProxy(int(open_meteo.base.rsplit(":", 1)[1])).start()
    proxy.down()  # connection refused: as offline as a local test can be
    base = f"http://127.0.0.1:{proxy.port}"
    env = {**offline_env, "OPEN_METEO_GEOCODING_URL": f"{base}/v1/search",
           "OPEN_METEO_FORECAST_URL": f"{base}/v1/forecast"}
    database = tmp_path / "weather.sqlite3"
    try:
        leader = spawn("leader", env)
        leader.wait_for(LEADER, timeout=15)
        leader.wait_for(UNAVAILABLE, timeout=10)
        leader.wait_for(r"stored 3 readings \(3 new, 3 simulated\) as leader of term \d+$", timeout=10)
        worker = spawn("worker", env)
        for city in CITIES:
            worker.wait_for(rf"^{city}\s+-?\d+\.\d°C\s+\d+%\s+simulated: .+\s+simulated\s+\d{{4}}-", timeout=15)
        worker.wait_for(r"^\(simulated: made up by the demo's simulated station", timeout=5)
        # Every stored row is exactly what the station says for its city and time.
        rows = sqlite_rows(database, "SELECT city, temperature, humidity, description, observed_at FROM weather"
                                     " WHERE provider = 'simulated'")
        assert len(rows) >= 3
        for city, temperature, humidity, text, observed in rows:
            expected = simulate(city, datetime.fromisoformat(observed).replace(tzinfo=timezone.utc))
            assert (temperature, humidity, text) == (expected.temperature, expected.humidity, expected.description)
        # The provider comes back: used again at its next try, said once.
        proxy.up()
        back = leader.wait_for(BACK, timeout=15)
        leader.wait_for(r"stored 3 readings \(3 new\) as leader of term \d+$", timeout=10, after=back.at)
        wait_until(lambda: {p for (p,) in sqlite_rows(database, "SELECT DISTINCT provider FROM weather")}
                   == {"simulated", "open-meteo"}, 10, "no real rows after the provider came back")
        for city in CITIES:
            worker.wait_for(rf"^{city}\s+.+\s+open-meteo\s+\d{{4}}-", timeout=10, after=back.at)
        assert leader.count(r"Open-Meteo unavailable") == 1, leader.tail(40)
        assert leader.count(BACK) == 1
        assert worker.count(r"became leader") == 0
        for instance in (leader, worker):
            assert "Traceback" not in instance.output
    finally:
        proxy.close()


def test_offline_on_mysql_with_openweathermap(spawn, demo_env, mysql_server, database: str) -> None:
    """The other provider and the other store: a key that is never checked (nothing answers)."""
    env = dict(demo_env, OPENWEATHER_URL=f"http://127.0.0.1:{free_port()}/data/2.5/weather")
    leader = spawn("leader", env)
    leader.wait_for(r"OpenWeatherMap unavailable: request for 'Hanoi' failed \(ConnectionError\): using the "
                    r"simulated station", timeout=20)
    leader.wait_for(r"stored 3 readings \(3 new, 3 simulated\)", timeout=10)
    worker = spawn("worker", env)
    worker.wait_for(r"^Tokyo\s+-?\d+\.\d°C\s+\d+%\s+simulated: .+\s+simulated\s+\d{4}-", timeout=15)
    wait_until(lambda: mysql_server.query(database, "SELECT COUNT(*) FROM weather")[0][0] >= 6, 10,
               "the leader did not keep writing simulated rows")
    for city, temperature, observed in mysql_server.query(
            database, "SELECT city, temperature, observed_at FROM weather WHERE provider = 'simulated'"):
        assert temperature == simulate(city, observed.replace(tzinfo=timezone.utc)).temperature
    assert leader.count(r"OpenWeatherMap unavailable") == 1
    assert demo_env["OPENWEATHER_API_KEY"] not in leader.output + worker.output


def test_always_never_asks_the_provider_and_off_writes_nothing(
        spawn, offline_env, open_meteo: FakeOpenMeteo, tmp_path: Path) -> None:
    always = spawn("always", {**offline_env, **open_meteo.env(), "WEATHER_SIMULATION": "always"})
    always.wait_for(r"weather from the simulated station \(WEATHER_SIMULATION=always; Open-Meteo is not asked\)",
                    timeout=15)
    always.wait_for(r"stored 3 readings \(3 new, 3 simulated\)", timeout=15)
    assert open_meteo.log() == []
    always.stop()
    dead = f"http://127.0.0.1:{free_port()}"
    off = spawn("off", {**offline_env, "WEATHER_SIMULATION": "off", "SQLITE_PATH": str(tmp_path / "off.sqlite3"),
                        "OPEN_METEO_GEOCODING_URL": f"{dead}/v1/search", "OPEN_METEO_FORECAST_URL": f"{dead}/v1/forecast"})
    off.wait_for(r"Open-Meteo unavailable: .*: pausing this round$", timeout=15)
    off.wait_for(r"backing off: next fetch in 2 s", timeout=5)
    assert sqlite_rows(tmp_path / "off.sqlite3", "SELECT COUNT(*) FROM weather") == [(0,)]
    assert off.count(r"simulated") == 0
