"""The stores on real databases, MySQL (MariaDB here), PostgreSQL and SQLite alike: schema, fencing by term,
one row per observation, the provider of each row; then what only MySQL has: reconnecting, logins,
and adding the provider column to a table an earlier version made."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from distributed_mutex_demo.config import MySQLSettings, load_settings
from distributed_mutex_demo.errors import StoreAccessError, StoreUnavailableError
from distributed_mutex_demo.stores import Store, open_store
from distributed_mutex_demo.stores.mysql import PROVIDER_COLUMN, WeatherStore
from distributed_mutex_demo.stores.postgres import PostgresStore
from distributed_mutex_demo.stores.sqlite import SQLiteStore
from distributed_mutex_demo.weather import Reading
from DistributedMutex.errors import StaleTermError
from harness.postgres import with_database
from harness.services import free_port
from support.old_schema import OLD_WEATHER_TABLE

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=timezone.utc)


def reading(city: str, minutes: int = 0, temperature: float = 20.0, provider: str = "openweathermap") -> Reading:
    return Reading(city, temperature, 50, "clear sky", T0 + timedelta(minutes=minutes), provider)


@pytest.fixture
def settings(mysql_server, database) -> MySQLSettings:
    return MySQLSettings(mysql_server.host, mysql_server.port, mysql_server.user,
                         mysql_server.password, database)


class Backend:
    """Stores on one database, and plain SQL on it from outside the store."""

    def __init__(self, make: Callable[[], Store], query: Callable[[str], list[tuple]]) -> None:
        self._make, self.query = make, query
        self.made: list[Store] = []

    def store(self) -> Store:
        store = self._make()
        self.made.append(store)
        return store


@pytest.fixture
def pg_database(postgres_server) -> Iterator[str]:
    name = postgres_server.create_database()
    yield name
    postgres_server.drop_database(name)


@pytest.fixture(params=["mysql", "sqlite", "postgresql"])
def backend(request, tmp_path: Path) -> Iterator[Backend]:
    if request.param == "postgresql":
        server, database = request.getfixturevalue("postgres_server"), request.getfixturevalue("pg_database")
        url = with_database(server.url, database)
        chosen = Backend(lambda: PostgresStore(url), lambda sql: server.execute(sql, database=database))
    elif request.param == "mysql":
        mysql_server, database = request.getfixturevalue("mysql_server"), request.getfixturevalue("database")
        settings = MySQLSettings(mysql_server.host, mysql_server.port, mysql_server.user, mysql_server.password,
                                 database)
        chosen = Backend(lambda: WeatherStore(settings), lambda sql: mysql_server.query(database, sql))
    else:
        path = tmp_path / "weather.sqlite3"

        def query(sql: str) -> list[tuple]:
            with sqlite3.connect(path) as connection:
                return connection.execute(sql).fetchall()
        chosen = Backend(lambda: SQLiteStore(str(path)), query)
    yield chosen
    for store in chosen.made:
        store.close()


@pytest.fixture
def store(backend: Backend) -> Store:
    return backend.store()


def test_open_store_follows_mysql_host(tmp_path: Path) -> None:
    sqlite = open_store(load_settings({"SQLITE_PATH": str(tmp_path / "w.db")}, tmp_path))
    assert isinstance(sqlite, SQLiteStore) and sqlite.description == f"SQLite at {tmp_path / 'w.db'}"
    mysql = open_store(load_settings({"MYSQL_HOST": "db.internal", "MYSQL_DATABASE": "demo"}, tmp_path))
    assert isinstance(mysql, WeatherStore) and mysql.description == "MySQL at db.internal:3306, database demo"
    assert not (tmp_path / "w.db").exists()  # nothing is opened before it is used


def test_database_and_tables_are_created(store: Store, backend: Backend) -> None:
    store.register_term(1, "a")
    store.write([reading("Hanoi")], 1, "a")
    assert backend.query("SELECT city, leader_id, term, provider FROM weather") == [("Hanoi", "a", 1, "openweathermap")]
    assert backend.query("SELECT term, leader_id FROM leader_term") == [(1, "a")]


def test_each_row_records_its_provider(store: Store, backend: Backend) -> None:
    store.register_term(1, "a")
    store.write([reading("Hanoi", 0, provider="open-meteo"), reading("Tokyo", 0)], 1, "a")
    assert backend.query("SELECT city, provider FROM weather ORDER BY city") == [
        ("Hanoi", "open-meteo"), ("Tokyo", "openweathermap")]
    assert {(r.city, r.provider) for r in store.latest()} == {("Hanoi", "open-meteo"), ("Tokyo", "openweathermap")}


def test_a_stale_leaders_write_is_refused(backend: Backend) -> None:
    old, new = backend.store(), backend.store()
    old.register_term(1, "old")
    assert old.write([reading("Hanoi", 0)], 1, "old") == 1
    new.register_term(2, "new")  # the successor registers before its first write
    with pytest.raises(StaleTermError, match="the store has term 2, this leader has term 1"):
        old.write([reading("Hanoi", 1)], 1, "old")
    assert new.write([reading("Hanoi", 1)], 2, "new") == 1
    with pytest.raises(StaleTermError):
        old.register_term(1, "old")  # nor can it take the term back
    assert backend.query("SELECT term, leader_id FROM weather ORDER BY id") == [(1, "old"), (2, "new")]


@pytest.mark.parametrize("term", [2**53, 2**63 - 1, 2**63, 10**30, -1])
def test_a_term_out_of_range_is_refused_as_stale_before_the_database_sees_it(backend: Backend, term: int) -> None:
    """No OverflowError (SQLite cannot bind 2^63) or driver error escaping the leader task: the
    fencing refusal the leader already handles, and the stored term is left as it was."""
    store = backend.store()
    store.register_term(5, "leader")
    for attempt in (lambda: store.register_term(term, "forged"), lambda: store.write([reading("Hanoi")], term, "forged")):
        with pytest.raises(StaleTermError, match=f"term {term} is outside 0..9007199254740991") as refused:
            attempt()
        assert (refused.value.own_term, refused.value.stored_term) == (term, 5)
    assert store.stored_term() == 5
    assert backend.query("SELECT COUNT(*) FROM weather") == [(0,)]


def test_a_write_without_a_registered_term_is_refused(store: Store) -> None:
    with pytest.raises(StaleTermError):
        store.write([reading("Hanoi")], 3, "x")


def test_the_same_observation_is_stored_once(store: Store, backend: Backend) -> None:
    store.register_term(1, "a")
    assert store.write([reading("Hanoi"), reading("Tokyo")], 1, "a") == 2
    store.register_term(2, "b")  # refetched after a failover
    assert store.write([reading("Hanoi"), reading("Tokyo", 10)], 2, "b") == 1
    assert backend.query("SELECT COUNT(*) FROM weather") == [(3,)]


def test_latest_gives_the_newest_reading_per_city(store: Store) -> None:
    store.register_term(4, "a")
    store.write([reading("Hanoi", 0, 20), reading("Hanoi", 5, 21), reading("Tokyo", 3, 9)], 4, "a")
    latest = {r.city: r for r in store.latest()}
    assert latest["Hanoi"].temperature == 21 and latest["Hanoi"].observed_at == T0 + timedelta(minutes=5)
    assert latest["Tokyo"].term == 4 and latest["Tokyo"].leader_id == "a"


def test_first_registrations_are_fenced_too(backend: Backend) -> None:
    newer, older = backend.store(), backend.store()
    newer.register_term(2, "newer")  # the very first registration on an empty database
    with pytest.raises(StaleTermError):
        older.register_term(1, "older")
    assert older.stored_term() == 2


def test_a_write_is_rolled_back_when_leadership_ended_meanwhile(store: Store, backend: Backend) -> None:
    store.register_term(1, "a")
    with pytest.raises(StaleTermError):
        store.write([reading("Hanoi")], 1, "a", still_leader=lambda: False)
    assert backend.query("SELECT COUNT(*) FROM weather") == [(0,)]


# -- MySQL only --------------------------------------------------------------------------------------

def test_reconnects_after_the_server_drops_the_connection(settings: MySQLSettings, mysql_server) -> None:
    store = WeatherStore(settings)
    store.register_term(1, "a")
    connection_id = store._connection.connection_id
    with mysql_server.connect() as admin, admin.cursor() as cursor:
        cursor.execute(f"KILL {int(connection_id)}")  # what a server restart does to a client
    assert store.write([reading("Hanoi")], 1, "a") == 1
    assert store._connection.connection_id != connection_id
    store.close()


def test_unreachable_server_is_one_clear_error() -> None:
    store = WeatherStore(MySQLSettings("127.0.0.1", free_port(), "root", "pw-SECRET-77", "weather"),
                         connect_timeout=1)
    with pytest.raises(StoreUnavailableError) as caught:
        store.latest()
    assert str(caught.value).startswith("MySQL at 127.0.0.1:")
    assert "unreachable" in str(caught.value)
    assert "pw-SECRET-77" not in str(caught.value)


def test_wrong_password_names_the_settings(settings: MySQLSettings) -> None:
    bad = MySQLSettings(settings.host, settings.port, "no_such_user_dm", "pw-SECRET-77", settings.database)
    with pytest.raises(StoreUnavailableError) as caught:
        WeatherStore(bad).latest()
    assert "refused the login of user 'no_such_user_dm': check MYSQL_USER and MYSQL_PASSWORD" in str(caught.value)
    assert "pw-SECRET-77" not in str(caught.value)


# -- the provider column on a table an earlier version made (MySQL) ---------------------------------

@pytest.fixture
def old_table(mysql_server, database) -> None:
    """The database as an earlier version left it: no provider column, one row."""
    with mysql_server.connect() as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{database}`")
        cursor.execute(f"USE `{database}`")
        cursor.execute(OLD_WEATHER_TABLE)
        cursor.execute("INSERT INTO weather (city, temperature, humidity, description, observed_at, leader_id, term,"
                       " stored_at) VALUES ('Hanoi', 25.0, 80, 'mist', '2026-11-26 09:00:00', 'old', 1, UTC_TIMESTAMP(6))")


def provider_column(mysql_server, database) -> list[tuple]:
    return mysql_server.query(database, "SELECT COLUMN_NAME, IS_NULLABLE, COLUMN_DEFAULT FROM information_schema.COLUMNS"
                              " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = 'weather' AND COLUMN_NAME = 'provider'",
                              (database,))


def test_the_provider_column_is_added_to_an_old_table(old_table, settings, mysql_server, database) -> None:
    assert provider_column(mysql_server, database) == []
    store = WeatherStore(settings)
    store.check_access()
    [(name, nullable, default)] = provider_column(mysql_server, database)
    assert (name, nullable, default.strip("'")) == ("provider", "NO", "openweathermap")
    # The old row was OpenWeatherMap's (the only provider there was); new rows say theirs.
    store.register_term(2, "new")
    store.write([reading("Hanoi", 0, provider="open-meteo")], 2, "new")
    assert mysql_server.query(database, "SELECT leader_id, provider FROM weather ORDER BY id") == [
        ("old", "openweathermap"), ("new", "open-meteo")]
    # An instance of the earlier version, still running during the upgrade, can go on inserting.
    mysql_server.query(database, "INSERT INTO weather (city, temperature, humidity, description, observed_at,"
                       " leader_id, term, stored_at) VALUES ('Tokyo', 9.0, 60, 'fog', '2026-11-26 09:00:00',"
                       " 'old', 2, UTC_TIMESTAMP(6))")
    assert mysql_server.query(database, "SELECT provider FROM weather WHERE city = 'Tokyo'") == [("openweathermap",)]
    store.close()


def test_instances_starting_together_add_the_column_once(old_table, settings, mysql_server, database) -> None:
    stores = [WeatherStore(settings) for _ in range(4)]
    errors: list[BaseException] = []

    def start(store: WeatherStore) -> None:
        try:
            store.check_access()
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    assert len(provider_column(mysql_server, database)) == 1
    for store in stores:
        store.close()


def test_a_user_without_alter_on_an_old_table_is_told_what_to_run(old_table, settings, mysql_server, database,
                                                                  mysql_user) -> None:
    user = mysql_user("SELECT, INSERT, UPDATE, CREATE")
    store = WeatherStore(MySQLSettings(settings.host, settings.port, user["MYSQL_USER"], user["MYSQL_PASSWORD"],
                                       database))
    with pytest.raises(StoreAccessError) as caught:
        store.check_access()
    statement = f"ALTER TABLE `{database}`.weather ADD COLUMN {PROVIDER_COLUMN}"
    assert str(caught.value) == (
        f"MySQL at {settings.host}:{settings.port}: user {user['MYSQL_USER']!r} lacks the ALTER privilege on "
        f"database {database!r} to add the provider column to table weather (made by an earlier version): "
        f"grant ALTER on `{database}`.weather to MYSQL_USER once, or have an administrator run {statement}")
    mysql_server.query(database, statement)  # what the message says, run by an administrator...
    store.check_access()  # ...and the least-privileged user goes on without ALTER
    store.close()
