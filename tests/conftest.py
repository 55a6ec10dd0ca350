"""Fixtures: real Azurite, real MySQL (MariaDB here), a real ZooKeeper, and local stand-ins for
OpenWeatherMap and Open-Meteo."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient, generate_container_sas

from DistributedMutex.backends.azure.lease import DEFAULT_API_VERSION
from harness.fake_open_meteo import FakeOpenMeteo
from harness.fake_openweather import FakeOpenWeather
from harness.postgres import PgBouncer, PostgresServer
from harness.processes import Instance
from harness.redis_server import RedisServer, check_answers, delete_prefix, new_prefix, shared_url
from harness.services import AZURITE_ACCOUNT, AZURITE_KEY, Azurite, MySQLServer, ZooKeeperServer

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
def zookeeper_server() -> Iterator[ZooKeeperServer]:
    try:
        server = ZooKeeperServer().start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.stop()


# -- Redis: the machine's server (REDIS_URL), one key prefix per test; or one of our own ---------------

@pytest.fixture(scope="session")
def redis_url() -> str:
    url = shared_url()
    try:
        check_answers(url)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    return url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix for one test's election, its keys deleted afterwards."""
    prefix = new_prefix()
    yield prefix
    delete_prefix(redis_url, prefix)


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of the test's own (restart it, FLUSHALL it, kill its clients), stopped after."""
    try:
        server = RedisServer().start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield server
    server.cleanup()


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
def postgres_server() -> PostgresServer:
    server = PostgresServer()
    try:
        server.check()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    return server


@pytest.fixture(scope="session")
def pgbouncer(postgres_server: PostgresServer) -> Iterator[PgBouncer]:
    try:
        bouncer = PgBouncer(postgres_server).start()
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield bouncer
    bouncer.stop()


@pytest.fixture
def lease_table(postgres_server: PostgresServer) -> Iterator[str]:
    """A lease table of the test's own in the server's database, dropped afterwards."""
    table = f"dm_lease_{os.getpid()}_{uuid.uuid4().hex[:10]}"
    yield table
    postgres_server.drop_table(table)


@pytest.fixture(scope="session")
def weather_server() -> Iterator[FakeOpenWeather]:
    server = FakeOpenWeather().start()
    yield server
    server.stop()


@pytest.fixture
def weather(weather_server: FakeOpenWeather) -> FakeOpenWeather:
    weather_server.reset()
    return weather_server


@pytest.fixture(scope="session")
def open_meteo_server() -> Iterator[FakeOpenMeteo]:
    server = FakeOpenMeteo().start()
    yield server
    server.stop()


@pytest.fixture
def open_meteo(open_meteo_server: FakeOpenMeteo) -> FakeOpenMeteo:
    open_meteo_server.reset()
    return open_meteo_server


@pytest.fixture
def container_name() -> str:
    return f"le-{uuid.uuid4().hex[:20]}"


@pytest.fixture
def mysql_user(mysql_server: MySQLServer, database: str) -> Iterator[Callable[..., dict[str, str]]]:
    """Make MySQL users with only the given privileges on the test's database (dropped after);
    each call returns the MYSQL_USER / MYSQL_PASSWORD settings for it."""
    made: list[str] = []

    def make(privileges: str | None, password: str = "Pw-least-4242") -> dict[str, str]:
        user = f"dm_u{os.getpid()}_{len(made)}"  # MySQL allows 32 characters
        mysql_server.create_user(user, password, {f"`{database}`.*": privileges} if privileges else {})
        made.append(user)
        return {"MYSQL_USER": user, "MYSQL_PASSWORD": password}

    yield make
    for user in made:
        mysql_server.drop_user(user)


@pytest.fixture
def container_sas(azurite: Azurite, container_name: str) -> Callable[..., str]:
    """A container SAS URL for the test's container, signed with Azurite's key (as an owner would);
    the container is created first unless create=False."""
    def make(permission: str | None = "rw", *, create: bool = True, expiry: datetime | None = None,
             **options: object) -> str:
        service = BlobServiceClient.from_connection_string(azurite.connection_string, api_version=DEFAULT_API_VERSION)
        if create:
            try:
                service.create_container(container_name)
            except ResourceExistsError:
                pass
        sas = generate_container_sas(
            AZURITE_ACCOUNT, container_name, account_key=AZURITE_KEY, permission=permission,
            expiry=expiry or datetime.now(timezone.utc) + timedelta(hours=1), **options)
        return f"http://127.0.0.1:{azurite.port}/{AZURITE_ACCOUNT}/{container_name}?{sas}"

    return make


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


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The chaos suites first: the longest (about 7 minutes; the database backends' about 2), so
    with `pytest -n` (make test) the other tests run beside them instead of after them."""
    first = ("test_chaos.py", "test_chaos_backends.py")
    items.sort(key=lambda item: first.index(item.path.name) if item.path.name in first else len(first))
