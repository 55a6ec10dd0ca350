"""Settings: one name each, read from the environment, a .env file, constant.py, or a default.

Precedence: environment > .env > constant.py > default. ``.env`` and ``constant.py`` are read from
the current directory (run the demo from the project's root). Every value is checked here, so
that a mistake stops the program at start with one line naming the setting and the rule.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import logging
import math
import os
import re
import runpy
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote, urlsplit

from dotenv import dotenv_values

from distributed_mutex_demo.backend_settings import (
    AZURE,
    OWN_SETTINGS,
    RAFT,
    ZOOKEEPER,
    RaftSettings,
    ZooKeeperSettings,
    parse_backend,
    raft_settings,
)
from DistributedMutex.backends.azure.sas import sas_query, sas_time, url_parts
from DistributedMutex.backends.zookeeper.arguments import parse_session_timeout, parse_znode_path, parse_zookeeper_hosts
from DistributedMutex.errors import ConfigurationError
from DistributedMutex.timing import AZURE_MAX_LEASE, AZURE_MIN_LEASE, ElectionTiming

T = TypeVar("T")

DEFAULTS: dict[str, str | None] = {
    "ELECTION_BACKEND": AZURE,  # azure | zookeeper | raft (backend_settings.py)
    "AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
    "AZURE_STORAGE_API_VERSION": "2026-06-06",
    "AZURE_STORAGE_ALLOW_HTTP": "false",  # plain http to a non-local storage endpoint
    # Other ways of authenticating; exactly one of these and AZURE_STORAGE_CONNECTION_STRING may be set.
    "AZURE_STORAGE_CONTAINER_SAS_URL": None,  # https://<account>.blob.core.windows.net/<container>?<SAS>
    "AZURE_STORAGE_ACCOUNT_URL": None,  # https://<account>.blob.core.windows.net, with Azure AD
    "CONTAINER_NAME": "leader-election",
    "BLOB_NAME": "weather-leader",
    "LEASE_DURATION": "15",
    "RENEW_INTERVAL": "5",
    "ACQUIRE_INTERVAL": "2",
    "INSTANCE_ID": None,  # <hostname>-<pid>
    "WEATHER_PROVIDER": None,  # openweathermap with OPENWEATHER_API_KEY, otherwise open-meteo
    "OPENWEATHER_API_KEY": None,  # required by WEATHER_PROVIDER=openweathermap
    "OPENWEATHER_URL": "https://api.openweathermap.org/data/2.5/weather",
    "OPEN_METEO_GEOCODING_URL": "https://geocoding-api.open-meteo.com/v1/search",
    "OPEN_METEO_FORECAST_URL": "https://api.open-meteo.com/v1/forecast",
    "WEATHER_CITIES": "Hanoi,Tokyo,New York,London,Paris",
    "FETCH_INTERVAL": "60",
    "READ_INTERVAL": "10",
    "READING_BUFFER_SIZE": "1000",
    "LEADER_STALL_TIMEOUT": None,  # 3 x FETCH_INTERVAL
    "MYSQL_HOST": None,  # unset: the readings go to the SQLite file SQLITE_PATH
    "MYSQL_PORT": "3306",
    "MYSQL_USER": "root",
    "MYSQL_PASSWORD": "",
    "MYSQL_DATABASE": "weather",
    "SQLITE_PATH": "weather.sqlite3",  # relative to the directory the program runs in
    "LOG_LEVEL": "INFO",
    "LEADERSHIP_JOURNAL": None,  # a file to append leadership intervals to (JSON lines)
    "METRICS_PORT": None,  # serve /metrics and /healthz on this port; unset: no endpoint
    "METRICS_HOST": "127.0.0.1",  # all interfaces only when asked for (0.0.0.0 or ::)
    "ZOOKEEPER_HOSTS": "127.0.0.1:2181",
    "ZOOKEEPER_PATH": "/election",
    "ZOOKEEPER_SESSION_TIMEOUT": "5",
    "RAFT_PEERS": None,  # id=host:port,... the whole cluster; required with ELECTION_BACKEND=raft
    "RAFT_ID": None,  # this instance's id in RAFT_PEERS; unset: INSTANCE_ID
    "RAFT_DATA_DIR": "raft-data",  # <RAFT_DATA_DIR>/<RAFT_ID>.json keeps the term and vote
    "RAFT_ELECTION_TIMEOUT": "1000-2000",  # milliseconds, min-max
}
SECRET_SETTINGS = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_CONTAINER_SAS_URL", "OPENWEATHER_API_KEY",
                   "MYSQL_PASSWORD")
# The ways of authenticating to storage, in the order the error messages name them.
STORAGE_AUTH_SETTINGS = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_CONTAINER_SAS_URL",
                         "AZURE_STORAGE_ACCOUNT_URL")
# What the lease needs from a container SAS, measured on Azurite 3.37: read (r) for the blob's
# properties, write (w) to create the blob, for every lease call and for the metadata under the
# lease. Create (c) adds nothing that write does not give; a container SAS never creates a container.
SAS_PERMISSIONS_NEEDED = (("r", "read"), ("w", "write"))

_CONNECTION_STRING_KEYS = {
    "usedevelopmentstorage", "developmentstorageproxyuri", "defaultendpointsprotocol",
    "accountname", "accountkey", "sharedaccesssignature", "endpointsuffix",
    "blobendpoint", "queueendpoint", "tableendpoint", "fileendpoint", "dfsendpoint",
    "blobsecondaryendpoint", "queuesecondaryendpoint", "tablesecondaryendpoint",
    "filesecondaryendpoint",
}
_CONTAINER_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")
_DATABASE_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
# The server's own schemas: the demo's tables have no business there.
_SYSTEM_DATABASES = ("mysql", "information_schema", "performance_schema", "sys")
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")
FREE_TIER_CALLS_PER_MINUTE = 60
# Open-Meteo's free, non-commercial use: fewer than 10,000 calls a day (open-meteo.com/en/terms).
OPEN_METEO_FREE_CALLS_PER_DAY = 10_000
OPENWEATHERMAP, OPEN_METEO = "openweathermap", "open-meteo"
WEATHER_PROVIDERS = (OPENWEATHERMAP, OPEN_METEO)
# The settings of the MySQL store other than MYSQL_HOST, which alone chooses MySQL over SQLite.
_MYSQL_DETAILS = ("MYSQL_PORT", "MYSQL_USER", "MYSQL_PASSWORD", "MYSQL_DATABASE")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MySQLSettings:
    host: str
    port: int
    user: str
    password: str
    database: str


@dataclass(frozen=True)
class Settings:
    connection_string: str
    allow_http: bool
    api_version: str
    container_name: str
    blob_name: str
    lease_duration: int
    renew_interval: float
    acquire_interval: float
    instance_id: str
    openweather_api_key: str | None
    openweather_url: str
    weather_cities: tuple[str, ...]
    fetch_interval: float
    read_interval: float
    reading_buffer_size: int
    leader_stall_timeout: float
    mysql: MySQLSettings | None  # None: the readings go to SQLite (sqlite_path)
    log_level: str
    leadership_journal: str | None = None
    sources: tuple[str, ...] = ()
    # Set instead of the connection string (one way of the three at most): see STORAGE_AUTH_SETTINGS.
    container_sas_url: str | None = None
    account_url: str | None = None
    metrics_port: int | None = None  # None: no /metrics and /healthz
    metrics_host: str = "127.0.0.1"
    sqlite_path: str = DEFAULTS["SQLITE_PATH"] or ""
    weather_provider: str = OPEN_METEO
    open_meteo_geocoding_url: str = DEFAULTS["OPEN_METEO_GEOCODING_URL"] or ""
    open_meteo_forecast_url: str = DEFAULTS["OPEN_METEO_FORECAST_URL"] or ""
    election_backend: str = AZURE
    zookeeper: ZooKeeperSettings | None = None  # with ELECTION_BACKEND=zookeeper
    raft: RaftSettings | None = None  # with ELECTION_BACKEND=raft
    # Settings given for another backend than the chosen one: ignored, and said so at start.
    ignored: tuple[str, ...] = ()

    @property
    def storage_auth(self) -> str:
        """The setting that says how to authenticate to storage (one of STORAGE_AUTH_SETTINGS)."""
        if self.container_sas_url:
            return "AZURE_STORAGE_CONTAINER_SAS_URL"
        if self.account_url:
            return "AZURE_STORAGE_ACCOUNT_URL"
        return "AZURE_STORAGE_CONNECTION_STRING"

    def timing(self) -> ElectionTiming:
        if self.zookeeper is not None:
            return self.zookeeper.timing()
        if self.raft is not None:
            return self.raft.timing()
        return ElectionTiming(self.lease_duration, self.renew_interval, self.acquire_interval)

    def require_api_key(self) -> str:
        if not self.openweather_api_key:
            raise ConfigurationError(
                "OPENWEATHER_API_KEY",
                "is required with WEATHER_PROVIDER=openweathermap: set it in the environment, .env or "
                "constant.py (a free key from openweathermap.org), or use WEATHER_PROVIDER=open-meteo, "
                "which needs none",
            )
        return self.openweather_api_key

    def check_weather_provider(self) -> None:
        """What the chosen weather provider needs before the demo runs (--status needs none of it)."""
        if self.weather_provider == OPENWEATHERMAP:
            self.require_api_key()

    def secrets(self) -> list[str]:
        """Values that must never be printed: for the log filter that masks them."""
        values = [self.connection_string, self.openweather_api_key or "",
                  self.mysql.password if self.mysql else ""]
        values += _connection_string_secrets(self.connection_string)
        if self.container_sas_url:
            values += sas_url_secrets(self.container_sas_url)
        return [v for v in values if len(v) >= 4]


def load_settings(environ: Mapping[str, str] | None = None, directory: Path | None = None, *,
                  member: bool = True) -> Settings:
    """Merge the sources and validate every setting; raises ConfigurationError on the first bad one.

    ``member=False`` for --status: it takes part in no election, so it needs no RAFT_ID of its own."""
    environ = os.environ if environ is None else environ
    directory = Path.cwd() if directory is None else directory
    raw, sources = _merge_sources(environ, directory)
    get = _Getter(raw)

    fetch_interval = get("FETCH_INTERVAL", _seconds(1, 86400))
    lease_duration = get("LEASE_DURATION", _whole_number(AZURE_MIN_LEASE, AZURE_MAX_LEASE,
                                                          "seconds (Azure's lease range)"))
    allow_http = get("AZURE_STORAGE_ALLOW_HTTP", _boolean)
    _one_storage_auth(get)
    api_key = get("OPENWEATHER_API_KEY", _secret_text, default=None)
    connection_string = get("AZURE_STORAGE_CONNECTION_STRING", _connection_string)
    container_sas_url = get("AZURE_STORAGE_CONTAINER_SAS_URL", _container_sas_url)
    account_url = get("AZURE_STORAGE_ACCOUNT_URL", _account_url)
    insecure = _plain_http_host(connection_string)
    if insecure and not allow_http:
        raise ConfigurationError(
            "AZURE_STORAGE_CONNECTION_STRING",
            f"sends the account's credentials over plain http to {insecure}, which is not this "
            "machine: use https, or set AZURE_STORAGE_ALLOW_HTTP=true (an emulator on another host)")
    insecure = _plain_http_url_host(container_sas_url) if container_sas_url else None
    if insecure and not allow_http:
        raise ConfigurationError(
            "AZURE_STORAGE_CONTAINER_SAS_URL",
            f"sends the SAS over plain http to {insecure}, which is not this machine: use https, "
            "or set AZURE_STORAGE_ALLOW_HTTP=true (an emulator on another host)")
    mysql, sqlite_path = _store_settings(get)
    backend = get("ELECTION_BACKEND", parse_backend)
    instance_id = get("INSTANCE_ID", _matching(
        _INSTANCE_ID, "1-64 letters, digits or . _ : @ -, starting with a letter or digit"),
        default=_default_instance_id())
    container_name = get("CONTAINER_NAME", _matching(
        _CONTAINER_NAME, "3-63 lowercase letters, digits and single hyphens, "
        "starting and ending with a letter or digit"))
    if container_sas_url:
        sas_container = sas_url_container(container_sas_url)
        if get.is_set("CONTAINER_NAME") and container_name != sas_container:
            raise ConfigurationError(
                "CONTAINER_NAME", f"{container_name!r} differs from the container {sas_container!r} of "
                "AZURE_STORAGE_CONTAINER_SAS_URL: leave CONTAINER_NAME unset or make them agree")
        container_name = sas_container
    settings = Settings(
        connection_string=connection_string,
        allow_http=allow_http,
        api_version=get("AZURE_STORAGE_API_VERSION", _matching(_API_VERSION, "a date like 2026-06-06")),
        container_name=container_name,
        blob_name=get("BLOB_NAME", _text(1, 1024)),
        lease_duration=lease_duration,
        renew_interval=get("RENEW_INTERVAL", _seconds(0.1, 3600)),
        acquire_interval=get("ACQUIRE_INTERVAL", _seconds(0.1, 3600)),
        instance_id=instance_id,
        openweather_api_key=api_key,
        openweather_url=get("OPENWEATHER_URL", _http_url),
        weather_cities=get("WEATHER_CITIES", _cities),
        fetch_interval=fetch_interval,
        read_interval=get("READ_INTERVAL", _seconds(0.1, 86400)),
        reading_buffer_size=get("READING_BUFFER_SIZE", _whole_number(1, 1_000_000, "readings")),
        leader_stall_timeout=get("LEADER_STALL_TIMEOUT", _seconds(1, 7 * 86400), default=str(3 * fetch_interval)),
        mysql=mysql,
        log_level=get("LOG_LEVEL", _log_level),
        leadership_journal=get("LEADERSHIP_JOURNAL", _journal_path, default=None),
        sources=tuple(sources),
        container_sas_url=container_sas_url,
        account_url=account_url,
        metrics_port=get("METRICS_PORT", _whole_number(1, 65535, "(a TCP port)"), default=None),
        metrics_host=get("METRICS_HOST", _listen_host),
        sqlite_path=sqlite_path,
        weather_provider=get("WEATHER_PROVIDER", _weather_provider,
                             default=OPENWEATHERMAP if api_key else OPEN_METEO),
        open_meteo_geocoding_url=get("OPEN_METEO_GEOCODING_URL", _http_url),
        open_meteo_forecast_url=get("OPEN_METEO_FORECAST_URL", _http_url),
        election_backend=backend,
        zookeeper=ZooKeeperSettings(
            hosts=get("ZOOKEEPER_HOSTS", parse_zookeeper_hosts), path=get("ZOOKEEPER_PATH", parse_znode_path),
            session_timeout=get("ZOOKEEPER_SESSION_TIMEOUT", parse_session_timeout)) if backend == ZOOKEEPER else None,
        raft=raft_settings(get, instance_id, member=member) if backend == RAFT else None,
        ignored=tuple(name for other, names in OWN_SETTINGS.items() if other != backend
                      for name in names if get.is_set(name)),
    )
    if get.is_set("METRICS_HOST") and settings.metrics_port is None:
        # Otherwise it would be ignored in silence, and the user would look for an endpoint that is not there.
        raise ConfigurationError("METRICS_HOST", "is set but METRICS_PORT is not: set METRICS_PORT to serve "
                                                 "/metrics and /healthz")
    settings.timing()  # the invariants between the timings (raises ConfigurationError)
    if settings.leader_stall_timeout <= settings.fetch_interval:
        raise ConfigurationError(
            "LEADER_STALL_TIMEOUT", f"{settings.leader_stall_timeout:g} s must be longer than "
            f"FETCH_INTERVAL={settings.fetch_interval:g} s (the leader reports progress once a round)")
    return settings


def free_tier_warning(settings: Settings) -> str | None:
    if settings.weather_provider == OPEN_METEO:
        # Geocoding is asked once per city and kept: one forecast call per city and round.
        calls_per_day = len(settings.weather_cities) * 86400 / settings.fetch_interval
        if calls_per_day > OPEN_METEO_FREE_CALLS_PER_DAY:
            return (f"{len(settings.weather_cities)} cities every {settings.fetch_interval:g} s is "
                    f"{calls_per_day:.0f} calls/day, over Open-Meteo's free non-commercial use of "
                    f"{OPEN_METEO_FREE_CALLS_PER_DAY}/day: raise FETCH_INTERVAL")
        return None
    calls_per_minute = len(settings.weather_cities) * 60 / settings.fetch_interval
    if calls_per_minute > FREE_TIER_CALLS_PER_MINUTE:
        return (f"{len(settings.weather_cities)} cities every {settings.fetch_interval:g} s is "
                f"{calls_per_minute:.0f} calls/min, over OpenWeatherMap's free tier of "
                f"{FREE_TIER_CALLS_PER_MINUTE}/min: raise FETCH_INTERVAL")
    return None


def _store_settings(get: _Getter) -> tuple[MySQLSettings | None, str]:
    """MySQL when MYSQL_HOST is set, otherwise SQLite at SQLITE_PATH; never a silent mix of both."""
    host = get("MYSQL_HOST", _text(1, 255))
    mysql = MySQLSettings(
        host=host or "",
        port=get("MYSQL_PORT", _whole_number(1, 65535, "(a TCP port)")),
        user=get("MYSQL_USER", _text(1, 80)),
        password=get("MYSQL_PASSWORD", _any_text),
        database=get("MYSQL_DATABASE", _database_name),
    )
    sqlite_path = get("SQLITE_PATH", _text(1, 4096))
    if host is not None:
        if get.is_set("SQLITE_PATH"):
            raise ConfigurationError(
                "SQLITE_PATH", "cannot be used together with MYSQL_HOST: set MYSQL_HOST to store the "
                "readings in MySQL, or SQLITE_PATH to store them in a local SQLite file, not both")
        return mysql, sqlite_path
    # Before MYSQL_HOST had no default, a user could set only the password: that user means MySQL,
    # and would otherwise find the readings going to a file without a word.
    stray = next((name for name in _MYSQL_DETAILS if get.is_set(name)), None)
    if stray:
        raise ConfigurationError(
            stray, "is set but MYSQL_HOST is not: set MYSQL_HOST (e.g. 127.0.0.1) to store the readings "
            "in MySQL, or leave the MYSQL_* settings unset to store them in SQLite at SQLITE_PATH")
    return None, sqlite_path


# -- sources --------------------------------------------------------------------------------------

def _merge_sources(environ: Mapping[str, str], directory: Path) -> tuple[dict[str, str], list[str]]:
    merged: dict[str, str] = {}
    used: list[str] = []
    constant_file = directory / "constant.py"
    if constant_file.is_file():
        merged.update(_read_constant_py(constant_file))
        used.append("constant.py")
    env_file = directory / ".env"
    if env_file.is_file():
        values = {k: v for k, v in dotenv_values(env_file).items() if k in DEFAULTS and v is not None}
        merged.update(values)
        used.append(".env")
    from_environment = {k: v for k, v in environ.items() if k in DEFAULTS}
    if from_environment:
        used.append("environment")
    merged.update(from_environment)
    return merged, used


def _read_constant_py(path: Path) -> dict[str, str]:
    try:
        namespace = runpy.run_path(str(path))
    except SyntaxError as exc:
        raise ConfigurationError("constant.py", f"cannot be read: syntax error on line {exc.lineno}") from None
    except Exception as exc:  # noqa: BLE001 - any failure of the user's file is a config error
        raise ConfigurationError("constant.py", f"cannot be read: {type(exc).__name__}") from None
    values: dict[str, str] = {}
    for name in DEFAULTS:
        if name not in namespace:
            continue
        value = namespace[name]
        if isinstance(value, (list, tuple)):
            value = ",".join(str(item) for item in value)
        values[name] = "" if value is None else str(value)
    return values


class _Getter:
    def __init__(self, raw: Mapping[str, str]) -> None:
        self._raw = raw

    _UNSET = object()

    def is_set(self, name: str) -> bool:
        """Given by a source (even if empty), not just the default."""
        return name in self._raw

    def __call__(self, name: str, parse: Callable[[str, str], T], default: Any = _UNSET) -> T:
        value = self._raw.get(name)
        if value is None:
            value = DEFAULTS[name] if default is self._UNSET else default
            if value is None:
                return None  # type: ignore[return-value]
        return parse(name, value)


# -- parsers: (name, text) -> value, or ConfigurationError naming the setting -----------------------

def _shown(name: str, value: str) -> str:
    return "(hidden)" if name in SECRET_SETTINGS else repr(value)


def _number(name: str, value: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise ConfigurationError(name, f"must be a number of seconds, got {_shown(name, value)}") from None
    if not math.isfinite(number):
        raise ConfigurationError(name, f"must be a finite number, got {_shown(name, value)}")
    return number


def _seconds(low: float, high: float) -> Callable[[str, str], float]:
    def parse(name: str, value: str) -> float:
        number = _number(name, value)
        if not low <= number <= high:
            raise ConfigurationError(name, f"must be from {low:g} to {high:g} seconds, got {value.strip()}")
        return number
    return parse


def _whole_number(low: int, high: int, unit: str) -> Callable[[str, str], int]:
    def parse(name: str, value: str) -> int:
        text = value.strip()
        if not re.fullmatch(r"[+-]?\d+", text):
            raise ConfigurationError(name, f"must be a whole number from {low} to {high} {unit}, "
                                           f"got {_shown(name, value)}")
        number = int(text)
        if not low <= number <= high:
            raise ConfigurationError(name, f"must be from {low} to {high} {unit}, got {number}")
        return number
    return parse


def _text(low: int, high: int) -> Callable[[str, str], str]:
    def parse(name: str, value: str) -> str:
        text = value.strip()
        if not low <= len(text) <= high:
            raise ConfigurationError(name, f"must be {low} to {high} characters long, got {len(text)}")
        return text
    return parse


def _journal_path(name: str, value: str) -> str:
    path = Path(value.strip()).expanduser()
    if not value.strip():
        raise ConfigurationError(name, "is empty: a file name, or leave it unset")
    if path.is_dir():
        raise ConfigurationError(name, f"{str(path)!r} is a directory: name a file in it")
    if not path.parent.is_dir():
        raise ConfigurationError(name, f"the directory {str(path.parent)!r} does not exist")
    return str(path)


def _any_text(name: str, value: str) -> str:
    return value


def _secret_text(name: str, value: str) -> str | None:
    text = value.strip()
    if not text:
        raise ConfigurationError(name, "is set but empty")
    if any(c.isspace() for c in text):
        raise ConfigurationError(name, "must not contain spaces")
    return text


def _matching(pattern: re.Pattern[str], rule: str) -> Callable[[str, str], str]:
    def parse(name: str, value: str) -> str:
        text = value.strip()
        if not pattern.fullmatch(text):
            raise ConfigurationError(name, f"must be {rule}, got {_shown(name, value)}")
        return text
    return parse


def _boolean(name: str, value: str) -> bool:
    text = value.strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ConfigurationError(name, f"must be true or false, got {value!r}")


def _plain_http_host(connection_string: str) -> str | None:
    """The host of a non-local storage endpoint reached over plain http, if any."""
    pairs = _connection_string_pairs(connection_string)
    if pairs.get("usedevelopmentstorage", "").lower() == "true":
        return None
    if "blobendpoint" in pairs:
        endpoint = urlsplit(pairs["blobendpoint"])
        scheme, host = endpoint.scheme, endpoint.hostname or ""
    else:
        scheme = pairs.get("defaultendpointsprotocol", "https").lower()
        host = f"{pairs.get('accountname', '')}.blob.{pairs.get('endpointsuffix', 'core.windows.net')}"
    if scheme != "http" or _is_local(host):
        return None
    return host


def _log_level(name: str, value: str) -> str:
    level = value.strip().upper()
    if level not in _LOG_LEVELS:
        raise ConfigurationError(name, f"must be one of {', '.join(_LOG_LEVELS)}, got {value!r}")
    return level


def _listen_host(name: str, value: str) -> str:
    """An address to listen on: an IP address or a host name (no URL, no port, no brackets)."""
    text = value.strip()
    try:
        ipaddress.ip_address(text)
    except ValueError:
        if not _HOST_NAME.fullmatch(text):
            raise ConfigurationError(name, "must be an IP address (0.0.0.0 or :: for all interfaces) or a host "
                                           f"name, got {value!r}") from None
    return text


def _weather_provider(name: str, value: str) -> str:
    text = value.strip().lower()
    if text not in WEATHER_PROVIDERS:
        raise ConfigurationError(name, f"must be {' or '.join(WEATHER_PROVIDERS)}, got {value!r}")
    return text


def _http_url(name: str, value: str) -> str:
    text = value.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(name, f"must be an http:// or https:// URL, got {value!r}")
    return text


def _cities(name: str, value: str) -> tuple[str, ...]:
    cities = [city.strip() for city in value.split(",")]
    if not value.strip() or any(not city for city in cities):
        raise ConfigurationError(name, f"must be comma-separated city names with none empty, got {value!r}")
    duplicates = sorted({c for c in cities if [x.lower() for x in cities].count(c.lower()) > 1})
    if duplicates:
        raise ConfigurationError(name, f"names a city twice: {', '.join(duplicates)}")
    too_long = [c for c in cities if len(c) > 100]
    if too_long:
        raise ConfigurationError(name, "has a city name over 100 characters")
    return tuple(cities)


def _connection_string(name: str, value: str) -> str:
    """Check the shape of a storage connection string without ever echoing it."""
    def bad(reason: str) -> ConfigurationError:
        return ConfigurationError(name, f"is not a valid Azure Storage connection string: {reason}")

    text = value.strip()
    if not text:
        raise bad("it is empty")
    for index, segment in enumerate(s for s in text.split(";") if s.strip()):
        key, sep, _ = segment.partition("=")
        if not sep or not key.strip():
            raise bad(f"part {index + 1} is not key=value")
        if key.strip().lower() not in _CONNECTION_STRING_KEYS:
            raise bad(f"unknown key {key.strip()!r}")
    pairs = _connection_string_pairs(text)
    if pairs.get("usedevelopmentstorage", "").lower() == "true":
        return text
    if "accountkey" not in pairs and "sharedaccesssignature" not in pairs:
        raise bad("it needs AccountKey (with AccountName) or SharedAccessSignature")
    if "accountkey" in pairs:
        if not pairs.get("accountname"):
            raise bad("AccountKey needs AccountName")
        try:
            base64.b64decode(pairs["accountkey"], validate=True)
        except (binascii.Error, ValueError):
            raise bad("AccountKey is not valid base64") from None
    if "blobendpoint" in pairs:
        endpoint = urlsplit(pairs["blobendpoint"])
        if endpoint.scheme not in ("http", "https") or not endpoint.netloc:
            raise bad("BlobEndpoint is not an http(s) URL")
    elif not pairs.get("accountname"):
        raise bad("it needs AccountName or BlobEndpoint")
    protocol = pairs.get("defaultendpointsprotocol", "https").lower()
    if protocol not in ("http", "https"):
        raise bad("DefaultEndpointsProtocol must be http or https")
    return text


def _connection_string_pairs(value: str) -> dict[str, str]:
    """Key (lowercased) to value; the only place a connection string is split up."""
    pairs = {}
    for segment in value.split(";"):
        key, sep, val = segment.partition("=")
        if sep and key.strip():
            pairs[key.strip().lower()] = val.strip()
    return pairs


def _connection_string_secrets(value: str) -> list[str]:
    pairs = _connection_string_pairs(value)
    return [pairs[k] for k in ("accountkey", "sharedaccesssignature") if pairs.get(k)]


# -- the other ways of authenticating to storage ----------------------------------------------------

def _one_storage_auth(get: _Getter) -> None:
    given = [name for name in STORAGE_AUTH_SETTINGS if get.is_set(name)]
    if len(given) > 1:
        raise ConfigurationError(
            given[-1], f"cannot be used together with {given[0]}: set exactly one way of authenticating "
            "to storage (AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_CONTAINER_SAS_URL or "
            "AZURE_STORAGE_ACCOUNT_URL)")


def sas_url_container(url: str) -> str:
    """The container a (validated) container SAS URL names: its last path segment."""
    parts = url_parts(url)
    segments = [s for s in parts[2].split("/") if s] if parts else []
    return unquote(segments[-1]) if segments else ""


def sas_url_secrets(url: str) -> list[str]:
    """Every form in which a SAS URL's signature could show up: the URL, its query, the signature."""
    parts = url_parts(url)
    signature = sas_query(url).get("sig", "")
    forms = [url, parts[3] if parts else "", signature, quote(signature, safe=""), quote(signature)]
    return [form for form in forms if form]


def _container_sas_url(name: str, value: str) -> str:
    """Check a container SAS URL without ever echoing its query (the signature is a secret)."""
    def bad(reason: str) -> ConfigurationError:
        return ConfigurationError(name, f"is not a container SAS URL: {reason}")

    text = value.strip()
    if not text:
        raise bad("it is empty")
    parts = url_parts(text)
    if parts is None:
        raise bad("it must be an https:// URL like https://<account>.blob.core.windows.net/<container>?<SAS>")
    container = sas_url_container(text)
    if not container:
        raise bad("its path names no container")
    if not _CONTAINER_NAME.fullmatch(container):
        raise bad(f"its last path segment {container!r} is not a container name")
    query = sas_query(text)
    if not query.get("sig"):
        raise bad("its query has no SAS signature (sig=)")
    if query.get("sr", "") != "c":
        kind = "an account SAS" if query.get("srt") else f"a SAS for sr={query.get('sr', '')!r}"
        raise bad(f"it carries {kind}, not a container SAS (sr=c)")
    if "sp" in query:
        granted = query["sp"]
        missing = [f"{word} ({letter})" for letter, word in SAS_PERMISSIONS_NEEDED if letter not in granted]
        if missing:
            raise ConfigurationError(
                name, f"the SAS lacks the {' and '.join(missing)} permission{'s' if len(missing) > 1 else ''}: "
                f"the lease needs read (r) and write (w) on the container, the SAS grants sp={granted}")
    elif not query.get("si"):
        raise bad("it has neither permissions (sp=) nor a stored access policy (si=)")
    if "se" in query:
        expiry = sas_time(query["se"])
        if expiry is None:
            raise bad(f"its expiry se={query['se']!r} is not a time like 2026-11-26T13:31:24Z")
        if expiry <= datetime.now(timezone.utc):
            raise ConfigurationError(name, f"the SAS expired at {expiry:%Y-%m-%d %H:%M:%S} UTC: "
                                           "generate a new one")
    return text


def _account_url(name: str, value: str) -> str:
    """The account's blob endpoint, for Azure AD (DefaultAzureCredential)."""
    text = value.strip().rstrip("/")
    parts = url_parts(text)
    if parts is None or parts[0] != "https":
        # Bearer tokens are never sent over plain http (azure-core refuses it too).
        raise ConfigurationError(name, "must be an https:// URL like https://<account>.blob.core.windows.net")
    _, host, path, query = parts
    if query or "#" in text:
        raise ConfigurationError(name, "must not carry a query: a SAS belongs in AZURE_STORAGE_CONTAINER_SAS_URL")
    segments = [s for s in path.split("/") if s]
    # An emulator or a custom domain may put the account in the path (https://127.0.0.1:10000/acct).
    if len(segments) > 1 or (segments and host.lower().endswith(".blob.core.windows.net")):
        raise ConfigurationError(name, "must be the account's blob endpoint without a container "
                                       "(the container is CONTAINER_NAME), got " + repr(text))
    return text


def _plain_http_url_host(url: str) -> str | None:
    parts = url_parts(url)
    if parts is None or parts[0] != "http" or _is_local(parts[1]):
        return None
    return parts[1]


def _is_local(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")


def check_database_name(value: str) -> str:
    """MYSQL_DATABASE's rule, for a store built without load_settings (it is quoted into SQL)."""
    if value != value.strip():
        raise ConfigurationError("MYSQL_DATABASE", f"must be 1-64 letters, digits or underscores, got {value!r}")
    return _database_name("MYSQL_DATABASE", value)


def _database_name(name: str, value: str) -> str:
    text = value.strip()
    if not _DATABASE_NAME.fullmatch(text):
        raise ConfigurationError(name, f"must be 1-64 letters, digits or underscores, got {value!r}")
    if text.lower() in _SYSTEM_DATABASES:
        raise ConfigurationError(name, f"must not be the server's own database {text!r}")
    return text


def _default_instance_id() -> str:
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:50] or "host"
    return f"{host}-{os.getpid()}"
