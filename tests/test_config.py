"""Settings: sources and precedence, every rule, and the one-line error with exit code 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distributed_mutex_demo.config import DEFAULTS, load_settings
from DistributedMutex.errors import ConfigurationError
from harness.processes import SCRIPT

KEY = {"OPENWEATHER_API_KEY": "k3y-for-tests"}
SECRET_KEY = "c2VjcmV0LWFjY291bnQta2V5LTEyMzQ="  # base64, recognisable


def test_defaults(tmp_path: Path) -> None:
    s = load_settings({}, tmp_path)
    assert s.connection_string == "UseDevelopmentStorage=true"
    assert (s.container_name, s.blob_name) == ("leader-election", "weather-leader")
    assert (s.lease_duration, s.renew_interval, s.acquire_interval) == (15, 5, 2)
    assert s.weather_cities == ("Hanoi", "Tokyo", "New York", "London", "Paris")
    assert (s.fetch_interval, s.read_interval) == (60, 10)
    assert s.leader_stall_timeout == 180  # 3 fetch intervals
    assert s.reading_buffer_size == 1000
    # No MYSQL_HOST: the readings go to a SQLite file in the current directory.
    assert s.mysql is None
    assert s.sqlite_path == "weather.sqlite3"
    # No key: the weather comes from Open-Meteo.
    assert s.weather_provider == "open-meteo"
    assert s.open_meteo_geocoding_url == "https://geocoding-api.open-meteo.com/v1/search"
    assert s.open_meteo_forecast_url == "https://api.open-meteo.com/v1/forecast"
    assert s.openweather_url == "https://api.openweathermap.org/data/2.5/weather"
    assert s.log_level == "INFO"
    assert s.instance_id.endswith(f"-{__import__('os').getpid()}")
    assert s.openweather_api_key is None


def test_precedence_environment_over_dotenv_over_constant_py(tmp_path: Path) -> None:
    (tmp_path / "constant.py").write_text(
        'LEASE_DURATION = 20\nRENEW_INTERVAL = 6\nACQUIRE_INTERVAL = 3\n'
        'WEATHER_CITIES = ["Hue", "Da Nang"]\nOTHER = object()\n')
    (tmp_path / ".env").write_text("RENEW_INTERVAL=7\nACQUIRE_INTERVAL=4\n")
    s = load_settings({"ACQUIRE_INTERVAL": "1.5", "UNRELATED": "x"}, tmp_path)
    assert s.lease_duration == 20  # constant.py
    assert s.renew_interval == 7  # .env beats constant.py
    assert s.acquire_interval == 1.5  # environment beats both
    assert s.weather_cities == ("Hue", "Da Nang")
    assert s.sources == ("constant.py", ".env", "environment")


def test_api_key_required_only_to_run_the_demo_with_openweathermap(tmp_path: Path) -> None:
    s = load_settings({"WEATHER_PROVIDER": "openweathermap"}, tmp_path)  # --status needs no key
    with pytest.raises(ConfigurationError, match="OPENWEATHER_API_KEY: is required with WEATHER_PROVIDER=openweathermap"):
        s.check_weather_provider()
    assert load_settings(KEY, tmp_path).require_api_key() == "k3y-for-tests"
    load_settings({}, tmp_path).check_weather_provider()  # Open-Meteo needs nothing


@pytest.mark.parametrize(("env", "provider"), [
    ({}, "open-meteo"),  # no key
    (KEY, "openweathermap"),  # a key chooses OpenWeatherMap
    ({**KEY, "WEATHER_PROVIDER": "open-meteo"}, "open-meteo"),  # a key kept, Open-Meteo chosen
    ({"WEATHER_PROVIDER": " Open-Meteo "}, "open-meteo"),
    ({**KEY, "WEATHER_PROVIDER": "OpenWeatherMap"}, "openweathermap"),
])
def test_weather_provider_selection(tmp_path: Path, env: dict[str, str], provider: str) -> None:
    settings = load_settings(env, tmp_path)
    assert settings.weather_provider == provider
    settings.check_weather_provider()


def test_a_key_in_constant_py_chooses_openweathermap_too(tmp_path: Path) -> None:
    (tmp_path / "constant.py").write_text('OPENWEATHER_API_KEY = "k3y-in-constant-py"\n')
    assert load_settings({}, tmp_path).weather_provider == "openweathermap"


def test_store_selection(tmp_path: Path) -> None:
    sqlite = load_settings({"SQLITE_PATH": "/var/lib/demo/readings.db"}, tmp_path)
    assert sqlite.mysql is None and sqlite.sqlite_path == "/var/lib/demo/readings.db"
    mysql = load_settings({"MYSQL_HOST": "db.internal", "MYSQL_PASSWORD": "Pw-SECRET-1"}, tmp_path)
    assert mysql.mysql is not None
    assert (mysql.mysql.host, mysql.mysql.port, mysql.mysql.user, mysql.mysql.password, mysql.mysql.database) == (
        "db.internal", 3306, "root", "Pw-SECRET-1", "weather")
    assert "Pw-SECRET-1" in mysql.secrets()  # masked in every log line


@pytest.mark.parametrize("name", ["MYSQL_PORT", "MYSQL_USER", "MYSQL_PASSWORD", "MYSQL_DATABASE"])
def test_a_mysql_setting_without_mysql_host_is_an_error(tmp_path: Path, name: str) -> None:
    value = {"MYSQL_PORT": "3307", "MYSQL_USER": "app", "MYSQL_PASSWORD": "Pw-SECRET-1", "MYSQL_DATABASE": "w"}[name]
    with pytest.raises(ConfigurationError) as caught:
        load_settings({name: value}, tmp_path)
    assert str(caught.value).startswith(f"{name}: is set but MYSQL_HOST is not")
    assert "Pw-SECRET-1" not in str(caught.value)


def test_mysql_host_and_sqlite_path_together_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="SQLITE_PATH: cannot be used together with MYSQL_HOST"):
        load_settings({"MYSQL_HOST": "127.0.0.1", "SQLITE_PATH": "w.db"}, tmp_path)


def test_open_meteo_stays_under_its_free_daily_calls(tmp_path: Path) -> None:
    from distributed_mutex_demo.config import free_tier_warning
    assert free_tier_warning(load_settings({}, tmp_path)) is None  # 5 cities a minute: 7200 a day
    busy = load_settings({"FETCH_INTERVAL": "30"}, tmp_path)  # 14400 a day
    assert free_tier_warning(busy) == ("5 cities every 30 s is 14400 calls/day, over Open-Meteo's free "
                                       "non-commercial use of 10000/day: raise FETCH_INTERVAL")


BAD = [
    ({"LEASE_DURATION": "14"}, "LEASE_DURATION: must be from 15 to 60 seconds"),
    ({"LEASE_DURATION": "61"}, "LEASE_DURATION: must be from 15 to 60 seconds"),
    ({"LEASE_DURATION": "-1"}, "LEASE_DURATION: must be from 15 to 60 seconds"),
    ({"LEASE_DURATION": "15.5"}, "LEASE_DURATION: must be a whole number"),
    ({"LEASE_DURATION": "fifteen"}, "LEASE_DURATION: must be a whole number"),
    ({"LEASE_DURATION": ""}, "LEASE_DURATION: must be a whole number"),
    ({"RENEW_INTERVAL": "10"}, "RENEW_INTERVAL: 10 s is too close to LEASE_DURATION=15 s"),
    ({"RENEW_INTERVAL": "0"}, "RENEW_INTERVAL: must be from 0.1 to 3600 seconds"),
    ({"RENEW_INTERVAL": "5s"}, "RENEW_INTERVAL: must be a number of seconds, got '5s'"),
    ({"RENEW_INTERVAL": "nan"}, "RENEW_INTERVAL: must be a finite number"),
    ({"ACQUIRE_INTERVAL": "abc"}, "ACQUIRE_INTERVAL: must be a number of seconds"),
    ({"ACQUIRE_INTERVAL": "20"}, "ACQUIRE_INTERVAL: 20 s must be above 0 and at most LEASE_DURATION=15 s"),
    ({"FETCH_INTERVAL": "0.5"}, "FETCH_INTERVAL: must be from 1 to 86400 seconds"),
    ({"LEADER_STALL_TIMEOUT": "30", "FETCH_INTERVAL": "60"}, "LEADER_STALL_TIMEOUT: 30 s must be longer than FETCH_INTERVAL=60 s"),
    ({"READING_BUFFER_SIZE": "0"}, "READING_BUFFER_SIZE: must be from 1 to 1000000 readings"),
    ({"READ_INTERVAL": "-3"}, "READ_INTERVAL: must be from 0.1 to 86400 seconds"),
    ({"MYSQL_PORT": "70000"}, "MYSQL_PORT: must be from 1 to 65535"),
    ({"MYSQL_PORT": "mysql"}, "MYSQL_PORT: must be a whole number"),
    ({"MYSQL_DATABASE": "weather; DROP TABLE x"}, "MYSQL_DATABASE: must be 1-64 letters, digits or underscores"),
    ({"MYSQL_HOST": " "}, "MYSQL_HOST: must be 1 to 255 characters long"),
    ({"CONTAINER_NAME": "Leader_Election"}, "CONTAINER_NAME: must be 3-63 lowercase letters"),
    ({"CONTAINER_NAME": "a--b"}, "CONTAINER_NAME: must be 3-63 lowercase letters"),
    ({"INSTANCE_ID": "has space"}, "INSTANCE_ID: must be 1-64 letters"),
    ({"WEATHER_CITIES": "Hanoi,,Tokyo"}, "WEATHER_CITIES: must be comma-separated city names with none empty"),
    ({"WEATHER_CITIES": ""}, "WEATHER_CITIES: must be comma-separated city names"),
    ({"WEATHER_CITIES": "Hanoi,hanoi"}, "WEATHER_CITIES: names a city twice: Hanoi, hanoi"),
    ({"OPENWEATHER_URL": "ftp://example.com"}, "OPENWEATHER_URL: must be an http:// or https:// URL"),
    ({"OPENWEATHER_API_KEY": "  "}, "OPENWEATHER_API_KEY: is set but empty"),
    ({"LOG_LEVEL": "LOUD"}, "LOG_LEVEL: must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ({"AZURE_STORAGE_API_VERSION": "latest"}, "AZURE_STORAGE_API_VERSION: must be a date"),
    ({"AZURE_STORAGE_CONNECTION_STRING": "not a connection string"},
     "AZURE_STORAGE_CONNECTION_STRING: is not a valid Azure Storage connection string: part 1 is not key=value"),
    ({"AZURE_STORAGE_CONNECTION_STRING": f"AccountName=acct;AccountKey={SECRET_KEY};Colour=blue"},
     "AZURE_STORAGE_CONNECTION_STRING: is not a valid Azure Storage connection string: unknown key 'Colour'"),
    ({"AZURE_STORAGE_CONNECTION_STRING": "AccountName=acct;AccountKey=not*base64!"},
     "AZURE_STORAGE_CONNECTION_STRING: is not a valid Azure Storage connection string: AccountKey is not valid base64"),
    ({"AZURE_STORAGE_CONNECTION_STRING": "AccountName=acct"},
     "AZURE_STORAGE_CONNECTION_STRING: is not a valid Azure Storage connection string: it needs AccountKey"),
    ({"AZURE_STORAGE_CONNECTION_STRING": f"AccountKey={SECRET_KEY}"},
     "AZURE_STORAGE_CONNECTION_STRING: is not a valid Azure Storage connection string: AccountKey needs AccountName"),
    ({"AZURE_STORAGE_CONNECTION_STRING": f"DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={SECRET_KEY}"},
     "AZURE_STORAGE_CONNECTION_STRING: sends the account's credentials over plain http to acct.blob.core.windows.net"),
    ({"AZURE_STORAGE_CONNECTION_STRING": f"AccountName=a;AccountKey={SECRET_KEY};BlobEndpoint=http://azurite:10000/a"},
     "AZURE_STORAGE_CONNECTION_STRING: sends the account's credentials over plain http to azurite, which is not"),
    ({"AZURE_STORAGE_ALLOW_HTTP": "maybe"}, "AZURE_STORAGE_ALLOW_HTTP: must be true or false, got 'maybe'"),
    ({"AZURE_STORAGE_CONNECTION_STRING": ""},
     "AZURE_STORAGE_CONNECTION_STRING: is not a valid Azure Storage connection string: it is empty"),
    ({"WEATHER_PROVIDER": "accuweather"}, "WEATHER_PROVIDER: must be openweathermap or open-meteo, got 'accuweather'"),
    ({"OPEN_METEO_FORECAST_URL": "api.open-meteo.com"}, "OPEN_METEO_FORECAST_URL: must be an http:// or https:// URL"),
    ({"SQLITE_PATH": ""}, "SQLITE_PATH: must be 1 to 4096 characters long, got 0"),
]


@pytest.mark.parametrize(("env", "message"), BAD, ids=[m.split(":")[0] + "-" + str(i) for i, (_, m) in enumerate(BAD)])
def test_each_bad_setting_names_itself_and_the_rule(tmp_path: Path, env: dict, message: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings({**KEY, **env}, tmp_path)
    assert message in str(caught.value)
    assert SECRET_KEY not in str(caught.value)


def test_plain_http_is_fine_locally_and_when_allowed(tmp_path: Path) -> None:
    local = f"AccountName=a;AccountKey={SECRET_KEY};BlobEndpoint=http://127.0.0.1:10000/a"
    assert load_settings({"AZURE_STORAGE_CONNECTION_STRING": local}, tmp_path).connection_string == local
    remote = f"AccountName=a;AccountKey={SECRET_KEY};BlobEndpoint=http://azurite:10000/a"
    allowed = load_settings({"AZURE_STORAGE_CONNECTION_STRING": remote, "AZURE_STORAGE_ALLOW_HTTP": "true"}, tmp_path)
    assert allowed.allow_http and allowed.connection_string == remote


def test_constant_py_with_a_syntax_error_is_a_configuration_error(tmp_path: Path) -> None:
    (tmp_path / "constant.py").write_text("LEASE_DURATION = = 15\n")
    with pytest.raises(ConfigurationError, match=r"constant\.py: cannot be read: syntax error on line 1"):
        load_settings({}, tmp_path)


def test_valid_connection_strings_are_accepted(tmp_path: Path) -> None:
    for value in (
        "UseDevelopmentStorage=true",
        f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={SECRET_KEY};EndpointSuffix=core.windows.net",
        "BlobEndpoint=https://acct.blob.core.windows.net;SharedAccessSignature=sv=2024&sig=abc",
    ):
        assert load_settings({"AZURE_STORAGE_CONNECTION_STRING": value}, tmp_path).connection_string == value


def run_program(tmp_path: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import os
    base = {k: v for k, v in os.environ.items() if k not in DEFAULTS}
    return subprocess.run([sys.executable, str(SCRIPT)], env={**base, **env}, cwd=tmp_path,
                          capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(("env", "message"), [
    ({"LEASE_DURATION": "10"}, "LEASE_DURATION: must be from 15 to 60 seconds (Azure's lease range), got 10"),
    ({"RENEW_INTERVAL": "14"}, "RENEW_INTERVAL: 14 s is too close to LEASE_DURATION=15 s"),
    ({"FETCH_INTERVAL": "often"}, "FETCH_INTERVAL: must be a number of seconds, got 'often'"),
    ({"AZURE_STORAGE_CONNECTION_STRING": f"AccountName=a;AccountKey={SECRET_KEY}x"},
     "AZURE_STORAGE_CONNECTION_STRING: is not a valid Azure Storage connection string"),
    ({"OPENWEATHER_API_KEY": None, "WEATHER_PROVIDER": "openweathermap"}, "OPENWEATHER_API_KEY: is required"),
], ids=["out-of-range", "renew-too-close", "not-a-number", "connection-string", "missing-api-key"])
def test_configuration_errors_exit_2_with_one_line(tmp_path: Path, env: dict, message: str) -> None:
    full = {**KEY, **env}
    result = run_program(tmp_path, {k: v for k, v in full.items() if v is not None})
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("configuration error: ")
    assert message in lines[0]
    assert SECRET_KEY not in result.stderr and "Traceback" not in result.stderr


@given(st.dictionaries(st.sampled_from(sorted(DEFAULTS)), st.text(max_size=40), max_size=6))
def test_any_input_gives_settings_or_a_configuration_error(env: dict[str, str]) -> None:
    try:
        settings = load_settings(env, Path("/nonexistent-directory"))
    except ConfigurationError as exc:
        assert exc.setting in DEFAULTS or exc.setting in ("safety_margin",)
        assert "\n" not in str(exc)
    else:
        settings.timing()
