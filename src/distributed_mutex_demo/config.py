"""Settings: one name each, read from the environment, a .env file, constant.py, or a default.

Precedence: environment > .env > constant.py > default (settings_sources.py). Every value is
checked here, so that a mistake stops the program at start with one line naming the setting and
the rule:

    parsers.py           single values (numbers, names, URLs, ...)
    storage_settings.py  the blob lease's storage and its three ways of authenticating
    postgres_settings.py ELECTION_BACKEND=postgres and the PostgreSQL store (POSTGRES_*)
    backend_settings.py  the other backends' settings, and the library arguments they become
    election_backends.py the table ELECTION_BACKEND chooses from
"""

from __future__ import annotations

import logging
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from distributed_mutex_demo.backend_settings import AZURE, RaftSettings, RedisSettings, ZooKeeperSettings, parse_backend
from distributed_mutex_demo.election_backends import CHOICES
from distributed_mutex_demo.parsers import (
    SECRET_SETTINGS,
    boolean,
    check_database_name,
    cities,
    http_url,
    journal_path,
    listen_host,
    log_level,
    matching,
    seconds_in,
    secret_text,
    text_of_length,
    whole_number_in,
)
from distributed_mutex_demo.postgres_settings import POSTGRES_DEFAULTS, PostgresSettings
from distributed_mutex_demo.settings_sources import Getter, merge_sources
from distributed_mutex_demo.storage_settings import (
    SAS_PERMISSIONS_NEEDED,
    STORAGE_AUTH_SETTINGS,
    account_url,
    connection_string,
    connection_string_secrets,
    container_sas_url,
    one_storage_auth,
    plain_http_host,
    plain_http_url_host,
    sas_url_container,
    sas_url_secrets,
)
from distributed_mutex_demo.store_settings import MySQLSettings, read_postgres_store_choice, read_store
from DistributedMutex.backends.azure.arguments import (
    AZURE_MAX_LEASE,
    AZURE_MIN_LEASE,
    CONTAINER_NAME,
    CONTAINER_NAME_RULE,
)
from DistributedMutex.backends.postgres.arguments import url_password
from DistributedMutex.errors import ConfigurationError
from DistributedMutex.timing import ElectionTiming

__all__ = [
    "DEFAULTS",
    "OPENWEATHERMAP",
    "OPEN_METEO",
    "SAS_PERMISSIONS_NEEDED",
    "SECRET_SETTINGS",
    "SIMULATED",
    "STORAGE_AUTH_SETTINGS",
    "MySQLSettings",
    "Settings",
    "check_database_name",
    "free_tier_warning",
    "load_settings",
]

DEFAULTS: dict[str, str | None] = {
    "ELECTION_BACKEND": AZURE,  # azure | zookeeper | raft | redis (backend_settings.py)
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
    "WEATHER_SIMULATION": "auto",  # auto | off | always: the simulated station (simulated_weather.py)
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
    # Mutual TLS between the peers (PEM files), all three or none; none: plain TCP, loopback peers only.
    "RAFT_TLS_CERT": None,  # this peer's certificate, naming RAFT_ID as subjectAltName=DNS:<id>
    "RAFT_TLS_KEY": None,  # its private key (unencrypted, chmod 600)
    "RAFT_TLS_CA": None,  # the CA that signed every peer's certificate
    **POSTGRES_DEFAULTS,  # POSTGRES_URL, ... and POSTGRES_STORE (postgres_settings.py)
    # ELECTION_BACKEND=redis: one Redis primary; the password in the URL is never shown.
    "REDIS_URL": "redis://127.0.0.1:6379/0",  # redis://[[user]:password@]host[:port][/db], rediss:// for TLS
    "REDIS_KEY_PREFIX": "distributed-mutex:weather-leader",  # the election's keys: {prefix}:lease, :term, :leader
    "REDIS_LEASE_DURATION": "5",  # seconds, 2-60: a crashed leader is replaced within about this
}
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")
_API_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")
FREE_TIER_CALLS_PER_MINUTE = 60
# Open-Meteo's free, non-commercial use: fewer than 10,000 calls a day (open-meteo.com/en/terms).
OPEN_METEO_FREE_CALLS_PER_DAY = 10_000
OPENWEATHERMAP, OPEN_METEO = "openweathermap", "open-meteo"
WEATHER_PROVIDERS = (OPENWEATHERMAP, OPEN_METEO)
# The provider column of the simulated station's readings (not a WEATHER_PROVIDER value).
SIMULATED = "simulated"
SIMULATION_MODES = ("auto", "off", "always")

log = logging.getLogger(__name__)


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
    mysql: MySQLSettings | None  # None: the readings go to SQLite (sqlite_path), or PostgreSQL (postgres_store_url)
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
    weather_simulation: str = "auto"  # one of SIMULATION_MODES
    election_backend: str = AZURE
    # The chosen backend's own settings (the blob lease's are the fields above): see election_backends.
    own: ZooKeeperSettings | RaftSettings | PostgresSettings | RedisSettings | None = None
    # Settings given for another backend than the chosen one: ignored, and said so at start.
    ignored: tuple[str, ...] = ()
    # POSTGRES_STORE=true: the readings go to PostgreSQL at this URL (POSTGRES_URL).
    postgres_store_url: str | None = None

    @property
    def storage_auth(self) -> str:
        """The setting that says how to authenticate to storage (one of STORAGE_AUTH_SETTINGS)."""
        if self.container_sas_url:
            return "AZURE_STORAGE_CONTAINER_SAS_URL"
        if self.account_url:
            return "AZURE_STORAGE_ACCOUNT_URL"
        return "AZURE_STORAGE_CONNECTION_STRING"

    @property
    def zookeeper(self) -> ZooKeeperSettings | None:
        return self.own if isinstance(self.own, ZooKeeperSettings) else None

    @property
    def raft(self) -> RaftSettings | None:
        return self.own if isinstance(self.own, RaftSettings) else None

    @property
    def postgres(self) -> PostgresSettings | None:
        return self.own if isinstance(self.own, PostgresSettings) else None

    @property
    def redis(self) -> RedisSettings | None:
        return self.own if isinstance(self.own, RedisSettings) else None

    def timing(self) -> ElectionTiming | None:
        """The timing the demo passes to DistributedMutex: the blob lease's from its settings
        (LEASE_DURATION, RENEW_INTERVAL, ACQUIRE_INTERVAL); None for the other backends, which
        then run with their own default_timing()."""
        return CHOICES[self.election_backend].timing(self)

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
        values += connection_string_secrets(self.connection_string)
        if self.container_sas_url:
            values += sas_url_secrets(self.container_sas_url)
        if self.postgres is not None:
            values += self.postgres.secrets()
        if self.postgres_store_url:
            values += url_password(self.postgres_store_url)
        if self.redis is not None:
            values += self.redis.secrets()
        return [v for v in values if len(v) >= 4]


def load_settings(environ: Mapping[str, str] | None = None, directory: Path | None = None, *,
                  member: bool = True) -> Settings:
    """Merge the sources and validate every setting; raises ConfigurationError on the first bad one.

    ``member=False`` for --status: it takes part in no election, so it needs no RAFT_ID of its own."""
    environ = os.environ if environ is None else environ
    directory = Path.cwd() if directory is None else directory
    raw, sources = merge_sources(environ, directory, DEFAULTS)
    get = Getter(raw, DEFAULTS)

    fetch_interval = get("FETCH_INTERVAL", seconds_in(1, 86400))
    lease_duration = get("LEASE_DURATION", whole_number_in(AZURE_MIN_LEASE, AZURE_MAX_LEASE,
                                                          "seconds (Azure's lease range)"))
    allow_http = get("AZURE_STORAGE_ALLOW_HTTP", boolean)
    one_storage_auth(get)
    api_key = get("OPENWEATHER_API_KEY", secret_text, default=None)
    connection_string_ = get("AZURE_STORAGE_CONNECTION_STRING", connection_string)
    container_sas_url_ = get("AZURE_STORAGE_CONTAINER_SAS_URL", container_sas_url)
    account_url_ = get("AZURE_STORAGE_ACCOUNT_URL", account_url)
    insecure = plain_http_host(connection_string_)
    if insecure and not allow_http:
        raise ConfigurationError(
            "AZURE_STORAGE_CONNECTION_STRING",
            f"sends the account's credentials over plain http to {insecure}, which is not this "
            "machine: use https, or set AZURE_STORAGE_ALLOW_HTTP=true (an emulator on another host)")
    insecure = plain_http_url_host(container_sas_url_) if container_sas_url_ else None
    if insecure and not allow_http:
        raise ConfigurationError(
            "AZURE_STORAGE_CONTAINER_SAS_URL",
            f"sends the SAS over plain http to {insecure}, which is not this machine: use https, "
            "or set AZURE_STORAGE_ALLOW_HTTP=true (an emulator on another host)")
    mysql, sqlite_path = read_store(get)
    postgres_store_url = read_postgres_store_choice(get, mysql)
    backend = get("ELECTION_BACKEND", parse_backend)
    instance_id = get("INSTANCE_ID", matching(
        _INSTANCE_ID, "1-64 letters, digits or . _ : @ -, starting with a letter or digit"),
        default=_default_instance_id())
    container_name = get("CONTAINER_NAME", matching(CONTAINER_NAME, CONTAINER_NAME_RULE))
    if container_sas_url_:
        sas_container = sas_url_container(container_sas_url_)
        if get.is_set("CONTAINER_NAME") and container_name != sas_container:
            raise ConfigurationError(
                "CONTAINER_NAME", f"{container_name!r} differs from the container {sas_container!r} of "
                "AZURE_STORAGE_CONTAINER_SAS_URL: leave CONTAINER_NAME unset or make them agree")
        container_name = sas_container
    settings = Settings(
        connection_string=connection_string_,
        allow_http=allow_http,
        api_version=get("AZURE_STORAGE_API_VERSION", matching(_API_VERSION, "a date like 2026-06-06")),
        container_name=container_name,
        blob_name=get("BLOB_NAME", text_of_length(1, 1024)),
        lease_duration=lease_duration,
        renew_interval=get("RENEW_INTERVAL", seconds_in(0.1, 3600)),
        acquire_interval=get("ACQUIRE_INTERVAL", seconds_in(0.1, 3600)),
        instance_id=instance_id,
        openweather_api_key=api_key,
        openweather_url=get("OPENWEATHER_URL", http_url),
        weather_cities=get("WEATHER_CITIES", cities),
        fetch_interval=fetch_interval,
        read_interval=get("READ_INTERVAL", seconds_in(0.1, 86400)),
        reading_buffer_size=get("READING_BUFFER_SIZE", whole_number_in(1, 1_000_000, "readings")),
        leader_stall_timeout=get("LEADER_STALL_TIMEOUT", seconds_in(1, 7 * 86400), default=str(3 * fetch_interval)),
        mysql=mysql,
        log_level=get("LOG_LEVEL", log_level),
        leadership_journal=get("LEADERSHIP_JOURNAL", journal_path, default=None),
        sources=tuple(sources),
        container_sas_url=container_sas_url_,
        account_url=account_url_,
        metrics_port=get("METRICS_PORT", whole_number_in(1, 65535, "(a TCP port)"), default=None),
        metrics_host=get("METRICS_HOST", listen_host),
        sqlite_path=sqlite_path,
        weather_provider=get("WEATHER_PROVIDER", _weather_provider,
                             default=OPENWEATHERMAP if api_key else OPEN_METEO),
        open_meteo_geocoding_url=get("OPEN_METEO_GEOCODING_URL", http_url),
        open_meteo_forecast_url=get("OPEN_METEO_FORECAST_URL", http_url),
        weather_simulation=get("WEATHER_SIMULATION", _simulation_mode),
        election_backend=backend,
        own=CHOICES[backend].read(get, instance_id, member),
        ignored=tuple(name for other, choice in CHOICES.items() if other != backend
                      for name in choice.settings if get.is_set(name)
                      and not (name == "POSTGRES_URL" and postgres_store_url)),
        postgres_store_url=postgres_store_url,
    )
    if get.is_set("METRICS_HOST") and settings.metrics_port is None:
        # Otherwise it would be ignored in silence, and the user would look for an endpoint that is not there.
        raise ConfigurationError("METRICS_HOST", "is set but METRICS_PORT is not: set METRICS_PORT to serve "
                                                 "/metrics and /healthz")
    settings.timing()  # the invariants between the blob lease's timings (raises ConfigurationError)
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


def _weather_provider(name: str, value: str) -> str:
    text = value.strip().lower()
    if text not in WEATHER_PROVIDERS:
        raise ConfigurationError(name, f"must be {' or '.join(WEATHER_PROVIDERS)}, got {value!r}")
    return text


def _simulation_mode(name: str, value: str) -> str:
    text = value.strip().lower()
    if text not in SIMULATION_MODES:
        raise ConfigurationError(name, f"must be auto, off or always, got {value!r}")
    return text


def _default_instance_id() -> str:
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:50] or "host"
    return f"{host}-{os.getpid()}"
