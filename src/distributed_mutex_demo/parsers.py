"""The parsers of single settings: ``parse(name, text) -> value``, or a ConfigurationError whose
one line names the setting and the rule it breaks (never a secret's value: see SECRET_SETTINGS)."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from DistributedMutex.errors import ConfigurationError
from DistributedMutex.settings.postgres import boolean as boolean  # one reading of true/false for library and demo

SECRET_SETTINGS = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_CONTAINER_SAS_URL", "OPENWEATHER_API_KEY",
                   "MYSQL_PASSWORD")
_DATABASE_NAME = re.compile(r"^[A-Za-z0-9_]{1,64}$")
# The server's own schemas: the demo's tables have no business there.
_SYSTEM_DATABASES = ("mysql", "information_schema", "performance_schema", "sys")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_HOST_NAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
                        r"(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$")


def shown(name: str, value: str) -> str:
    return "(hidden)" if name in SECRET_SETTINGS else repr(value)


def parse_number(name: str, value: str) -> float:
    try:
        number = float(value.strip())
    except ValueError:
        raise ConfigurationError(name, f"must be a number of seconds, got {shown(name, value)}") from None
    if not math.isfinite(number):
        raise ConfigurationError(name, f"must be a finite number, got {shown(name, value)}")
    return number


def seconds_in(low: float, high: float) -> Callable[[str, str], float]:
    def parse(name: str, value: str) -> float:
        number = parse_number(name, value)
        if not low <= number <= high:
            raise ConfigurationError(name, f"must be from {low:g} to {high:g} seconds, got {value.strip()}")
        return number
    return parse


def whole_number_in(low: int, high: int, unit: str) -> Callable[[str, str], int]:
    def parse(name: str, value: str) -> int:
        text = value.strip()
        if not re.fullmatch(r"[+-]?\d+", text):
            raise ConfigurationError(name, f"must be a whole number from {low} to {high} {unit}, "
                                           f"got {shown(name, value)}")
        number = int(text)
        if not low <= number <= high:
            raise ConfigurationError(name, f"must be from {low} to {high} {unit}, got {number}")
        return number
    return parse


def text_of_length(low: int, high: int) -> Callable[[str, str], str]:
    def parse(name: str, value: str) -> str:
        text = value.strip()
        if not low <= len(text) <= high:
            raise ConfigurationError(name, f"must be {low} to {high} characters long, got {len(text)}")
        return text
    return parse


def journal_path(name: str, value: str) -> str:
    path = Path(value.strip()).expanduser()
    if not value.strip():
        raise ConfigurationError(name, "is empty: a file name, or leave it unset")
    if path.is_dir():
        raise ConfigurationError(name, f"{str(path)!r} is a directory: name a file in it")
    if not path.parent.is_dir():
        raise ConfigurationError(name, f"the directory {str(path.parent)!r} does not exist")
    return str(path)


def any_text(name: str, value: str) -> str:
    return value


def secret_text(name: str, value: str) -> str | None:
    text = value.strip()
    if not text:
        raise ConfigurationError(name, "is set but empty")
    if any(c.isspace() for c in text):
        raise ConfigurationError(name, "must not contain spaces")
    return text


def matching(pattern: re.Pattern[str], rule: str) -> Callable[[str, str], str]:
    def parse(name: str, value: str) -> str:
        text = value.strip()
        if not pattern.fullmatch(text):
            raise ConfigurationError(name, f"must be {rule}, got {shown(name, value)}")
        return text
    return parse


def log_level(name: str, value: str) -> str:
    level = value.strip().upper()
    if level not in _LOG_LEVELS:
        raise ConfigurationError(name, f"must be one of {', '.join(_LOG_LEVELS)}, got {value!r}")
    return level


def listen_host(name: str, value: str) -> str:
    """An address to listen on: an IP address or a host name (no URL, no port, no brackets)."""
    text = value.strip()
    try:
        ipaddress.ip_address(text)
    except ValueError:
        if not _HOST_NAME.fullmatch(text):
            raise ConfigurationError(name, "must be an IP address (0.0.0.0 or :: for all interfaces) or a host "
                                           f"name, got {value!r}") from None
    return text


def http_url(name: str, value: str) -> str:
    text = value.strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigurationError(name, f"must be an http:// or https:// URL, got {value!r}")
    return text


def cities(name: str, value: str) -> tuple[str, ...]:
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


def check_database_name(value: str) -> str:
    """MYSQL_DATABASE's rule, for a store built without load_settings (it is quoted into SQL)."""
    if value != value.strip():
        raise ConfigurationError("MYSQL_DATABASE", f"must be 1-64 letters, digits or underscores, got {value!r}")
    return database_name("MYSQL_DATABASE", value)


def database_name(name: str, value: str) -> str:
    text = value.strip()
    if not _DATABASE_NAME.fullmatch(text):
        raise ConfigurationError(name, f"must be 1-64 letters, digits or underscores, got {value!r}")
    if text.lower() in _SYSTEM_DATABASES:
        raise ConfigurationError(name, f"must not be the server's own database {text!r}")
    return text
