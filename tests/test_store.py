"""The MySQL store on a real server: schema, fencing by term, one row per observation, reconnect."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from DistributedMutex.config import MySQLSettings
from DistributedMutex.errors import StaleTermError, StoreUnavailableError
from DistributedMutex.store import WeatherStore
from DistributedMutex.weather import Reading
from support.services import free_port

T0 = datetime(2026, 11, 26, 10, 0, tzinfo=timezone.utc)


def reading(city: str, minutes: int = 0, temperature: float = 20.0) -> Reading:
    return Reading(city, temperature, 50, "clear sky", T0 + timedelta(minutes=minutes))


@pytest.fixture
def settings(mysql_server, database) -> MySQLSettings:
    return MySQLSettings(mysql_server.host, mysql_server.port, mysql_server.user,
                         mysql_server.password, database)


@pytest.fixture
def store(settings: MySQLSettings):
    store = WeatherStore(settings)
    yield store
    store.close()


def test_database_and_tables_are_created(store, mysql_server, database) -> None:
    store.register_term(1, "a")
    columns = {row[0] for row in mysql_server.query(database, "SHOW COLUMNS FROM weather")}
    assert {"city", "temperature", "humidity", "description", "observed_at", "leader_id", "term"} <= columns


def test_a_stale_leaders_write_is_refused(settings: MySQLSettings, mysql_server, database) -> None:
    old, new = WeatherStore(settings), WeatherStore(settings)
    old.register_term(1, "old")
    assert old.write([reading("Hanoi", 0)], 1, "old") == 1
    new.register_term(2, "new")  # the successor registers before its first write
    with pytest.raises(StaleTermError, match="the store has term 2, this leader has term 1"):
        old.write([reading("Hanoi", 1)], 1, "old")
    assert new.write([reading("Hanoi", 1)], 2, "new") == 1
    with pytest.raises(StaleTermError):
        old.register_term(1, "old")  # nor can it take the term back
    rows = mysql_server.query(database, "SELECT term, leader_id FROM weather ORDER BY id")
    assert rows == [(1, "old"), (2, "new")]
    old.close()
    new.close()


def test_a_write_without_a_registered_term_is_refused(store: WeatherStore) -> None:
    with pytest.raises(StaleTermError):
        store.write([reading("Hanoi")], 3, "x")


def test_the_same_observation_is_stored_once(store: WeatherStore, mysql_server, database) -> None:
    store.register_term(1, "a")
    assert store.write([reading("Hanoi"), reading("Tokyo")], 1, "a") == 2
    store.register_term(2, "b")  # refetched after a failover
    assert store.write([reading("Hanoi"), reading("Tokyo", 10)], 2, "b") == 1
    assert mysql_server.query(database, "SELECT COUNT(*) FROM weather") == [(3,)]


def test_latest_gives_the_newest_reading_per_city(store: WeatherStore) -> None:
    store.register_term(4, "a")
    store.write([reading("Hanoi", 0, 20), reading("Hanoi", 5, 21), reading("Tokyo", 3, 9)], 4, "a")
    latest = {r.city: r for r in store.latest()}
    assert latest["Hanoi"].temperature == 21 and latest["Hanoi"].observed_at == T0 + timedelta(minutes=5)
    assert latest["Tokyo"].term == 4 and latest["Tokyo"].leader_id == "a"


def test_reconnects_after_the_server_drops_the_connection(store: WeatherStore, mysql_server) -> None:
    store.register_term(1, "a")
    connection_id = store._connection.connection_id
    with mysql_server.connect() as admin, admin.cursor() as cursor:
        cursor.execute(f"KILL {int(connection_id)}")  # what a server restart does to a client
    assert store.write([reading("Hanoi")], 1, "a") == 1
    assert store._connection.connection_id != connection_id


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


def test_first_registrations_are_fenced_too(settings: MySQLSettings) -> None:
    newer, older = WeatherStore(settings), WeatherStore(settings)
    newer.register_term(2, "newer")  # the very first registration on an empty database
    with pytest.raises(StaleTermError):
        older.register_term(1, "older")
    assert older.stored_term() == 2
    newer.close()
    older.close()


def test_a_write_is_rolled_back_when_leadership_ended_meanwhile(store: WeatherStore, mysql_server, database) -> None:
    store.register_term(1, "a")
    with pytest.raises(StaleTermError):
        store.write([reading("Hanoi")], 1, "a", still_leader=lambda: False)
    assert mysql_server.query(database, "SELECT COUNT(*) FROM weather") == [(0,)]
