"""Fixtures: real Azurite, real MySQL (MariaDB here), and a local OpenWeatherMap stand-in."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.fake_openweather import FakeOpenWeather
from support.processes import Instance
from support.services import Azurite, MySQLServer

_databases = itertools.count(1)


@pytest.fixture(scope="session")
def azurite() -> Iterator[Azurite]:
    try:
        server = Azurite().start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def mysql_server() -> MySQLServer:
    server = MySQLServer.from_environment()
    try:
        server.check()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    return server


@pytest.fixture
def database(mysql_server: MySQLServer) -> Iterator[str]:
    """A fresh database for one test, dropped afterwards."""
    name = f"dm_test_{os.getpid()}_{next(_databases)}"
    mysql_server.drop_database(name)
    yield name
    mysql_server.drop_database(name)


@pytest.fixture(scope="session")
def weather_server() -> Iterator[FakeOpenWeather]:
    server = FakeOpenWeather().start()
    yield server
    server.stop()


@pytest.fixture
def weather(weather_server: FakeOpenWeather) -> FakeOpenWeather:
    weather_server.reset()
    return weather_server


@pytest.fixture
def container_name() -> str:
    return f"le-{uuid.uuid4().hex[:20]}"


@pytest.fixture
def demo_env(azurite: Azurite, mysql_server: MySQLServer, database: str, weather: FakeOpenWeather,
             container_name: str) -> dict[str, str]:
    """Settings for instances of the demo that share one lease blob, database and weather API."""
    return {
        "AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string,
        "CONTAINER_NAME": container_name,
        "BLOB_NAME": "weather-leader",
        "LEASE_DURATION": "15",
        "RENEW_INTERVAL": "5",
        "ACQUIRE_INTERVAL": "0.5",
        "OPENWEATHER_API_KEY": weather.api_key,
        "OPENWEATHER_URL": weather.url,
        "WEATHER_CITIES": "Hanoi,Tokyo,London",
        "FETCH_INTERVAL": "1",
        "READ_INTERVAL": "0.5",
        "MYSQL_HOST": mysql_server.host,
        "MYSQL_PORT": str(mysql_server.port),
        "MYSQL_USER": mysql_server.user,
        "MYSQL_PASSWORD": mysql_server.password,
        "MYSQL_DATABASE": database,
        "LOG_LEVEL": "INFO",
    }


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Instance]]:
    """Start demo instances (run from an empty directory: no .env or constant.py); all stopped after."""
    started: list[Instance] = []

    def start(name: str, env: dict[str, str], *args: str) -> Instance:
        instance = Instance(name, env, tmp_path, args)
        started.append(instance)
        return instance

    yield start
    for instance in started:
        instance.stop()
