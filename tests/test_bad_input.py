"""docs/bad-input.md, row by row: each bad input gives exactly the documented line and exit code.

The document is the table of cases: every row must be a test here and every case a row there.
Configuration mistakes run in-process through load_settings (as the command line does), a sample
of them as real processes; storage and MySQL refusals run the demo as a process against real
Azurite and MariaDB; the weather API's answers run the leader's loop against the local stand-in.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import quote

import pytest
from azure.storage.blob import AccessPolicy, BlobServiceClient

from distributed_mutex_demo.app import WeatherApp
from distributed_mutex_demo.config import DEFAULTS, MySQLSettings, load_settings
from distributed_mutex_demo.open_meteo import OpenMeteoClient
from distributed_mutex_demo.stores.mysql import WeatherStore
from distributed_mutex_demo.stores.sqlite import SQLiteStore
from distributed_mutex_demo.weather import OpenWeatherClient
from DistributedMutex.backends.azure.lease import DEFAULT_API_VERSION
from DistributedMutex.errors import ConfigurationError
from harness.fake_open_meteo import FakeOpenMeteo
from harness.fake_openweather import FakeOpenWeather
from harness.processes import SCRIPT
from harness.services import AZURITE_ACCOUNT, Azurite, connection_string, free_port
from support.bad_input import (
    CONFIG_CASES,
    ROWS,
    ROWS_TESTED_ELSEWHERE,
    SECRET_ACCOUNT_KEY,
    SECRET_SIG,
    UNREADABLE,
    Case,
    assert_clean,
    assert_keeps_running_with,
    assert_stops_with,
)
from support.leader_loop import run_leader_until
from support.old_schema import OLD_WEATHER_TABLE

# The rows that are not configuration cases, by the test that produces them.
SAS_POLICY_ROWS = {"sas-policy-lacks-write": "r", "sas-policy-lacks-read": "w"}
MYSQL_PRIVILEGE_ROWS = {
    "mysql-missing-select": "INSERT, UPDATE, CREATE",
    "mysql-missing-insert": "SELECT, UPDATE, CREATE",
    "mysql-missing-update": "SELECT, INSERT, CREATE",
    "mysql-missing-create": "SELECT, INSERT, UPDATE",
    "mysql-no-privileges": None,
}
MYSQL_SINGLE_ROWS = {"mysql-missing-alter"}
SQLITE_ROWS = {"sqlite-directory-missing", "sqlite-path-is-a-directory", "sqlite-not-a-database"}
OPEN_METEO_ROWS = {  # row -> (endpoint, behaviour of the stand-in)
    "open-meteo-not-found": ("geocoding", "not-found"), "open-meteo-429": ("forecast", "429"),
    "open-meteo-500": ("forecast", "500"), "open-meteo-503": ("forecast", "503"),
    "open-meteo-400": ("forecast", "400"), "open-meteo-other-status": ("forecast", "403"),
    "open-meteo-timeout": ("forecast", "timeout"), "open-meteo-unreachable": ("", "unreachable"),
    "open-meteo-unreachable-no-simulation": ("", "unreachable"),
    "open-meteo-not-json": ("forecast", "malformed"), "open-meteo-geocoding-not-json": ("geocoding", "malformed"),
    "open-meteo-missing-field": ("forecast", "incomplete"), "open-meteo-absurd": ("forecast", "absurd"),
    "open-meteo-fahrenheit": ("forecast", "fahrenheit"),
}
WEATHER_ROWS = {
    "weather-404": "404", "weather-429": "429", "weather-500": "500", "weather-503": "503",
    "weather-other-status": "403", "weather-timeout": "timeout", "weather-not-json": "malformed",
    "weather-missing-field": "incomplete", "weather-absurd": "absurd",
    "weather-401": "wrong key", "weather-unreachable": "unreachable",
    "weather-unreachable-no-simulation": "unreachable",
}
# The provider cannot be reached: the simulated station takes over (said once), unless switched off.
SIMULATED_ROWS = {"weather-timeout", "weather-unreachable", "open-meteo-timeout", "open-meteo-unreachable"}


def simulation(row_id: str) -> str:
    return "off" if row_id.endswith("-no-simulation") else "auto"

SINGLE_ROWS = {
    "storage-unreachable", "storage-wrong-key", "storage-api-version", "sas-not-valid-yet", "sas-wrong-key",
    "sas-expired-while-running", "sas-container-missing", "account-url-no-credential", "mysql-unreachable",
    "mysql-wrong-password", "metrics-port-in-use", "metrics-host-not-local", "pg-database-missing",
}


def test_the_document_and_the_tests_have_the_same_rows() -> None:
    assert UNREADABLE == []
    tested = [*CONFIG_CASES, *SAS_POLICY_ROWS, *MYSQL_PRIVILEGE_ROWS, *WEATHER_ROWS, *SINGLE_ROWS,
              *ROWS_TESTED_ELSEWHERE, *MYSQL_SINGLE_ROWS, *SQLITE_ROWS, *OPEN_METEO_ROWS]
    assert len(tested) == len(set(tested))
    assert sorted(set(ROWS) - set(tested)) == [], "rows in the document without a test"
    assert sorted(set(tested) - set(ROWS)) == [], "tests without a row in the document"
    assert all(ROWS[i].exit == "2" for i in CONFIG_CASES)


# -- configuration mistakes ------------------------------------------------------------------------

def settings_error(case: Case, directory: Path) -> str:
    env = {k: v for k, v in {"OPENWEATHER_API_KEY": "k3y-for-tests", **case.env}.items() if v is not None}
    for name, text in case.files.items():
        (directory / name).write_text(text)
    with pytest.raises(ConfigurationError) as caught:
        load_settings(env, directory).check_weather_provider()  # what the demo checks before it starts
    return f"configuration error: {caught.value}"


@pytest.mark.parametrize("row_id", sorted(CONFIG_CASES))
def test_a_configuration_mistake_gives_its_documented_line(tmp_path: Path, row_id: str) -> None:
    line = settings_error(CONFIG_CASES[row_id], tmp_path)
    assert ROWS[row_id].pattern().fullmatch(line), f"{line!r} is not the documented {ROWS[row_id].message!r}"
    assert "\n" not in line
    assert_clean(line)


def run_program(directory: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os
    base = {k: v for k, v in os.environ.items() if k not in DEFAULTS}
    return subprocess.run([sys.executable, str(SCRIPT)], env={**base, **env}, cwd=directory,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize("row_id", ["sas-missing-write", "sas-expired", "sas-and-connection-string",
                                    "account-url-with-query", "mysql-database-hostile", "constant-py-raises",
                                    "api-key-missing", "mysql-setting-without-host", "pg-url-bad-port"])
def test_a_configuration_mistake_stops_the_program_with_one_line(tmp_path: Path, row_id: str) -> None:
    case = CONFIG_CASES[row_id]
    for name, text in case.files.items():
        (tmp_path / name).write_text(text)
    env = {k: v for k, v in {"OPENWEATHER_API_KEY": "k3y-for-tests", **case.env}.items() if v is not None}
    result = run_program(tmp_path, env)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert ROWS[row_id].pattern().fullmatch(result.stderr.strip()), result.stderr
    assert_clean(result.stderr)


# -- storage ---------------------------------------------------------------------------------------

def sas_env(demo_env: dict[str, str], url: str) -> dict[str, str]:
    env = {k: v for k, v in demo_env.items() if k != "AZURE_STORAGE_CONNECTION_STRING"}
    return dict(env, AZURE_STORAGE_CONTAINER_SAS_URL=url)


def test_storage_unreachable(spawn, demo_env) -> None:
    dead = connection_string(free_port())
    assert_keeps_running_with(spawn("no-storage", dict(demo_env, AZURE_STORAGE_CONNECTION_STRING=dead)),
                              "storage-unreachable")


def test_storage_wrong_key(spawn, demo_env, azurite: Azurite) -> None:
    wrong = connection_string(azurite.port, SECRET_ACCOUNT_KEY)
    assert_stops_with(spawn("wrong-key", dict(demo_env, AZURE_STORAGE_CONNECTION_STRING=wrong)), "storage-wrong-key")


def test_storage_api_version(spawn, demo_env) -> None:
    assert_stops_with(spawn("api-version", dict(demo_env, AZURE_STORAGE_API_VERSION="2026-10-06")),
                      "storage-api-version")


@pytest.mark.parametrize("row_id", sorted(SAS_POLICY_ROWS))
def test_sas_policy_without_a_needed_permission(spawn, demo_env, azurite: Azurite, container_sas,
                                                 container_name: str, row_id: str) -> None:
    # A stored access policy keeps the permissions on the server (the SAS has no sp=): only the
    # storage can tell what is missing.
    container_sas("rw")  # creates the container
    service = BlobServiceClient.from_connection_string(azurite.connection_string, api_version=DEFAULT_API_VERSION)
    service.get_blob_client(container_name, "weather-leader").upload_blob(b"")
    policy = AccessPolicy(permission=SAS_POLICY_ROWS[row_id], expiry=datetime.now(timezone.utc) + timedelta(hours=1))
    service.get_container_client(container_name).set_container_access_policy({"demo": policy})
    url = container_sas(None, policy_id="demo")
    assert "sp=" not in url
    assert_stops_with(spawn("policy", sas_env(demo_env, url)), row_id)


def test_sas_not_valid_yet(spawn, demo_env, container_sas) -> None:
    url = container_sas("rw", start=datetime.now(timezone.utc) + timedelta(hours=1),
                        expiry=datetime.now(timezone.utc) + timedelta(hours=2))
    assert_stops_with(spawn("too-early", sas_env(demo_env, url)), "sas-not-valid-yet")


def test_sas_wrong_key(spawn, demo_env, container_sas) -> None:
    url = container_sas("rw")
    query = dict(part.split("=", 1) for part in url.split("?", 1)[1].split("&"))
    forged = url.replace(f"sig={query['sig']}", f"sig={quote(SECRET_SIG, safe='')}")
    assert_stops_with(spawn("forged", sas_env(demo_env, forged)), "sas-wrong-key")


def test_sas_expiring_while_running_stops_a_worker(spawn, demo_env, container_sas) -> None:
    leader = spawn("leader", sas_env(demo_env, container_sas("rw")))
    leader.wait_for(r"became leader", timeout=15)
    # Long enough to start and see the leader (checked below), short enough for a quick test.
    expiry = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(seconds=8)
    worker = spawn("short-lived", sas_env(demo_env, container_sas("rw", expiry=expiry)))
    worker.wait_for(r"leader is leader", timeout=10)  # it worked while the SAS was valid
    assert_stops_with(worker, "sas-expired-while-running", timeout=20, time=f"{expiry:%Y-%m-%d %H:%M:%S}")


def test_sas_container_missing(spawn, demo_env, container_sas, container_name: str) -> None:
    url = container_sas("rw", create=False)
    assert_stops_with(spawn("no-container", sas_env(demo_env, url)), "sas-container-missing",
                      container=container_name)


def test_account_url_without_any_credential(spawn, demo_env, tmp_path: Path) -> None:
    env = {k: v for k, v in demo_env.items() if k != "AZURE_STORAGE_CONNECTION_STRING"}
    # HOME: no Azure CLI or token cache of whoever runs the tests.
    env.update(AZURE_STORAGE_ACCOUNT_URL=f"https://127.0.0.1:{free_port()}/{AZURITE_ACCOUNT}", HOME=str(tmp_path))
    instance = spawn("no-credential", env)
    assert_stops_with(instance, "account-url-no-credential")
    assert "EnvironmentCredential" in instance.output  # it says what it tried


# -- the metrics endpoint --------------------------------------------------------------------------

def test_metrics_port_in_use(spawn, demo_env) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = str(taken.getsockname()[1])
        assert_stops_with(spawn("port-taken", dict(demo_env, METRICS_PORT=port)), "metrics-port-in-use", port=port)


def test_metrics_host_not_local(spawn, demo_env) -> None:
    # 192.0.2.1 is TEST-NET-1 (RFC 5737): never an address of this machine.
    env = dict(demo_env, METRICS_PORT=str(free_port()), METRICS_HOST="192.0.2.1")
    assert_stops_with(spawn("foreign-host", env), "metrics-host-not-local")


# -- PostgreSQL ------------------------------------------------------------------------------------

def test_postgres_database_missing(spawn, weather: FakeOpenWeather, postgres_server) -> None:
    # Trust auth ignores the password: it must not be shown all the same.
    url = f"postgresql://{postgres_server.user}:Pw-least-4242@{postgres_server.host}:{postgres_server.port}/dm_no_such"
    env = {"ELECTION_BACKEND": "postgres", "POSTGRES_URL": url, "OPENWEATHER_API_KEY": weather.api_key,
           "OPENWEATHER_URL": weather.url, "WEATHER_CITIES": "Hanoi"}
    masked = url.replace("Pw-least-4242", "***")
    assert_stops_with(spawn("no-database", env), "pg-database-missing", url=masked, database="dm_no_such")


# -- MySQL -----------------------------------------------------------------------------------------

def test_mysql_unreachable(spawn, demo_env) -> None:
    port = str(free_port())
    instance = spawn("no-mysql", dict(demo_env, MYSQL_PORT=port))
    assert_keeps_running_with(instance, "mysql-unreachable", then=r"became leader", port=port)


def test_mysql_wrong_password(spawn, demo_env, mysql_user) -> None:
    user = mysql_user("SELECT, INSERT, UPDATE, CREATE")
    env = {**demo_env, **user, "MYSQL_PASSWORD": "Pw-WRONG-99"}
    assert_stops_with(spawn("wrong-password", env), "mysql-wrong-password", user=user["MYSQL_USER"])


@pytest.mark.parametrize("row_id", sorted(MYSQL_PRIVILEGE_ROWS))
def test_mysql_user_without_a_needed_privilege(spawn, demo_env, mysql_server, database, mysql_user,
                                               row_id: str) -> None:
    # An administrator made the database (and but for the CREATE case its tables): the missing
    # privilege is then the only problem.
    if row_id == "mysql-missing-create":
        with mysql_server.connect() as connection, connection.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{database}`")
    else:
        admin = WeatherStore(MySQLSettings(mysql_server.host, mysql_server.port, mysql_server.user,
                                           mysql_server.password, database))
        admin.check_access()
        admin.close()
    user = mysql_user(MYSQL_PRIVILEGE_ROWS[row_id])
    assert_stops_with(spawn("no-privilege", dict(demo_env, **user)), row_id, user=user["MYSQL_USER"],
                      database=database)


def test_mysql_user_without_alter_on_an_old_table(spawn, demo_env, mysql_server, database, mysql_user) -> None:
    with mysql_server.connect() as connection, connection.cursor() as cursor:
        cursor.execute(f"CREATE DATABASE `{database}`")
        cursor.execute(f"USE `{database}`")
        cursor.execute(OLD_WEATHER_TABLE)  # as an earlier version made it, without the provider column
    user = mysql_user("SELECT, INSERT, UPDATE, CREATE")
    assert_stops_with(spawn("no-alter", dict(demo_env, **user)), "mysql-missing-alter", user=user["MYSQL_USER"],
                      database=database)


# -- SQLite ----------------------------------------------------------------------------------------

def sqlite_env(demo_env: dict[str, str], path: Path) -> dict[str, str]:
    """The demo with its readings in SQLite: no MYSQL_* at all."""
    return {**{k: v for k, v in demo_env.items() if not k.startswith("MYSQL_")}, "SQLITE_PATH": str(path)}


def test_sqlite_directory_missing(spawn, demo_env, tmp_path: Path) -> None:
    path = tmp_path / "no-such-directory" / "weather.sqlite3"
    assert_stops_with(spawn("no-dir", sqlite_env(demo_env, path)), "sqlite-directory-missing", path=str(path),
                      directory=str(path.parent))
    assert not path.parent.exists()  # not made behind the user's back


def test_sqlite_path_is_a_directory(spawn, demo_env, tmp_path: Path) -> None:
    assert_stops_with(spawn("a-dir", sqlite_env(demo_env, tmp_path)), "sqlite-path-is-a-directory", path=str(tmp_path))


def test_sqlite_not_a_database(spawn, demo_env, tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not a database, but someone's notes\n" * 100)
    assert_stops_with(spawn("not-a-db", sqlite_env(demo_env, path)), "sqlite-not-a-database", path=str(path))
    assert path.read_text().startswith("not a database")  # left as it was


# -- the weather API -------------------------------------------------------------------------------

def lead_through_bad_answers(app: WeatherApp, store, row_id: str, caplog, *, retried: bool) -> None:
    """Run the leader until it has logged the row's documented line (twice where it retries the
    whole round) and otherwise stored both cities; no traceback and no secret in the log."""
    pattern = ROWS[row_id].pattern(city="Atlantis")
    caplog.set_level(logging.INFO, logger="distributed_mutex_demo")

    def logged() -> int:
        return sum(bool(pattern.fullmatch(r.getMessage())) for r in caplog.records)

    def done() -> bool:
        if retried:
            return logged() >= 2  # and it tried again
        return logged() >= 1 and {r.city for r in store.latest()} == {"Atlantis", "Hanoi"}

    asyncio.run(run_leader_until(app, done, timeout=15, instance_id="bad-input"))
    assert logged() >= 1, [r.getMessage() for r in caplog.records]
    assert not any(r.exc_info for r in caplog.records)
    assert_clean(caplog.text)


@pytest.mark.parametrize("row_id", sorted(WEATHER_ROWS))
def test_a_bad_weather_answer_gives_its_documented_line_and_the_leader_goes_on(
        weather: FakeOpenWeather, mysql_server, database, caplog, row_id: str) -> None:
    behaviour = WEATHER_ROWS[row_id]
    default_timeout, weather.timeout_seconds = weather.timeout_seconds, 1.0  # restored below
    key, url = weather.api_key, weather.url
    if behaviour == "wrong key":
        key = "WRONG-KEY-0042"
    elif behaviour == "unreachable":
        url = f"http://127.0.0.1:{free_port()}/data/2.5/weather"
    else:
        weather.script("Atlantis", behaviour)
    store = WeatherStore(MySQLSettings(mysql_server.host, mysql_server.port, mysql_server.user,
                                       mysql_server.password, database))
    client = OpenWeatherClient(key, url, timeout=(0.5, 0.5))
    try:
        app = WeatherApp(client, store, ("Atlantis", "Hanoi"), fetch_interval=1, read_interval=1,
                         simulation=simulation(row_id))
        lead_through_bad_answers(app, store, row_id, caplog,
                                 retried=behaviour == "wrong key" or row_id.endswith("-no-simulation"))
        if row_id in SIMULATED_ROWS:  # both cities stored, by the station, and the line said once
            assert {(r.city, r.provider) for r in store.latest()} == {("Atlantis", "simulated"), ("Hanoi", "simulated")}
            assert sum(ROWS[row_id].pattern(city="Atlantis").fullmatch(r.getMessage()) is not None
                       for r in caplog.records) == 1
    finally:
        store.close()
        client.close()
        weather.timeout_seconds = default_timeout
    assert weather.api_key not in caplog.text and "WRONG-KEY-0042" not in caplog.text


@pytest.mark.parametrize("row_id", sorted(OPEN_METEO_ROWS))
def test_a_bad_open_meteo_answer_gives_its_documented_line_and_the_leader_goes_on(
        open_meteo: FakeOpenMeteo, tmp_path: Path, caplog, row_id: str) -> None:
    endpoint, behaviour = OPEN_METEO_ROWS[row_id]
    open_meteo.timeout_seconds = 1.0  # the fixture restores it
    geocoding, forecast = open_meteo.geocoding_url, open_meteo.forecast_url
    if behaviour == "unreachable":
        dead = f"http://127.0.0.1:{free_port()}"
        geocoding, forecast = f"{dead}/v1/search", f"{dead}/v1/forecast"
    else:
        open_meteo.script("Atlantis", behaviour, endpoint=endpoint)
    store = SQLiteStore(str(tmp_path / "weather.sqlite3"))
    client = OpenMeteoClient(geocoding, forecast, timeout=(0.5, 0.5))
    try:
        app = WeatherApp(client, store, ("Atlantis", "Hanoi"), fetch_interval=1, read_interval=1,
                         simulation=simulation(row_id))
        lead_through_bad_answers(app, store, row_id, caplog, retried=row_id.endswith("-no-simulation"))
        if row_id in SIMULATED_ROWS:
            assert {r.provider for r in store.latest()} == {"simulated"}
        elif behaviour != "unreachable":
            assert {r.provider for r in store.latest()} == {"open-meteo"}
        else:
            assert store.latest() == []  # nothing to write while it pauses
    finally:
        store.close()
        client.close()
