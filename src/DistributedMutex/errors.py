"""Every exception the package raises, in one tree.

    LeaderElectionError
    ├── ConfigurationError        a setting is missing, malformed or inconsistent (exit code 2)
    ├── BackendError              the election backend (lease store) failed
    │   ├── LeaseLostError        the lease is definitely someone else's now: step down at once
    │   ├── StorageUnavailableError
    │   │                         no answer, a timeout or a server error: may heal by itself,
    │   │                         so a leader keeps trying until its local deadline
    │   └── StorageRejectedError  the storage refuses us for good (credentials, permissions,
    │                             an API version it does not speak): retrying cannot help
    ├── StoreError                the application's data store (MySQL)
    │   ├── StoreUnavailableError the server cannot be reached, refused the login, or failed
    │   │   └── StoreAccessError  it refused the login or a privilege: retrying will not help
    │   └── StaleTermError        the fencing check refused a write: a newer leader exists
    └── WeatherError              the weather API did not give a usable reading
        ├── WeatherAuthError      401: the API key is wrong or not yet active
        ├── CityNotFoundError     404: no such city; that city is skipped
        ├── WeatherBackoffError   429 or 5xx: the service asks us to slow down (retry_after)
        ├── WeatherUnavailableError  timeout or connection failure
        └── WeatherResponseError  not JSON, fields missing, or values out of range

Messages never contain secrets (account keys, connection strings, API keys, passwords).
"""

from __future__ import annotations


class LeaderElectionError(Exception):
    """Base class of every error raised by this package."""


class ConfigurationError(LeaderElectionError):
    """A setting is invalid. The message names the setting and the rule it breaks."""

    def __init__(self, setting: str, rule: str) -> None:
        super().__init__(f"{setting}: {rule}")
        self.setting = setting
        self.rule = rule


class BackendError(LeaderElectionError):
    """The election backend could not do what was asked."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class LeaseLostError(BackendError):
    """The lease was broken, changed, expired and taken, or the blob vanished."""


class StorageUnavailableError(BackendError):
    """The storage did not answer in time or answered with a transient failure."""


class StorageRejectedError(BackendError):
    """The storage refuses our requests for a reason that retrying will not fix."""


class StoreError(LeaderElectionError):
    """The application's data store failed."""


class StoreUnavailableError(StoreError):
    """The data store cannot be reached, or lost the connection mid-operation."""


class StoreAccessError(StoreUnavailableError):
    """The server refused the login or a privilege the store needs.

    A subclass of StoreUnavailableError so that a running instance treats it like an outage (a
    grant may come back); at start the command line takes it for what it is, a configuration error."""


class StaleTermError(StoreError):
    """A write was refused because the store has seen a newer leadership term."""

    def __init__(self, own_term: int, stored_term: int, reason: str | None = None) -> None:
        super().__init__(
            "write refused by the fencing check: "
            + (reason or f"the store has term {stored_term}, this leader has term {own_term}")
        )
        self.own_term = own_term
        self.stored_term = stored_term


class WeatherError(LeaderElectionError):
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
