"""Every exception the weather demo raises of its own, in one tree.

    DemoError
    ├── LaunchError               make demo cannot start (no Azurite, a bad DEMO_* value): exit 2
    ├── StoreError                the readings' data store (MySQL or SQLite)
    │   └── StoreUnavailableError the server cannot be reached, refused the login, or failed
    │       └── StoreAccessError  it refused the login or a privilege: retrying will not help
    └── WeatherError              the weather API did not give a usable reading
        ├── WeatherAuthError      401: the API key is wrong or not yet active
        ├── CityNotFoundError     404: no such city; that city is skipped
        ├── WeatherBackoffError   429 or 5xx: the service asks us to slow down (retry_after)
        ├── WeatherUnavailableError  timeout or connection failure
        └── WeatherResponseError  not JSON, fields missing, or values out of range

Settings errors are the library's ``ConfigurationError`` (naming the setting), and a write that
the fencing check refuses raises the library's ``StaleTermError``. Messages never contain secrets
(account keys, connection strings, API keys, passwords).
"""

from __future__ import annotations

__all__ = [
    "CityNotFoundError",
    "DemoError",
    "LaunchError",
    "StoreAccessError",
    "StoreError",
    "StoreUnavailableError",
    "WeatherAuthError",
    "WeatherBackoffError",
    "WeatherError",
    "WeatherResponseError",
    "WeatherUnavailableError",
]


class DemoError(Exception):
    """Base class of the demo's own errors."""


class LaunchError(DemoError):
    """The demo cannot start (no Azurite, a bad DEMO_* value): one line, exit 2."""


class StoreError(DemoError):
    """The application's data store failed."""


class StoreUnavailableError(StoreError):
    """The data store cannot be reached, or lost the connection mid-operation."""


class StoreAccessError(StoreUnavailableError):
    """The server refused the login or a privilege the store needs.

    A subclass of StoreUnavailableError so that a running instance treats it like an outage (a
    grant may come back); at start the command line takes it for what it is, a configuration error."""


class WeatherError(DemoError):
    """The weather API did not give a usable reading. Messages never contain the API key."""


class WeatherAuthError(WeatherError):
    """HTTP 401: the API key was refused."""


class CityNotFoundError(WeatherError):
    """HTTP 404: the API does not know the city."""


class WeatherBackoffError(WeatherError):
    """HTTP 429 or 5xx: back off before the next request."""

    def __init__(self, message: str, *, status: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class WeatherUnavailableError(WeatherError):
    """The API could not be reached or did not answer in time."""


class WeatherResponseError(WeatherError):
    """The answer was not JSON, lacked a field, or held an impossible value."""
