"""Every exception the library raises, in one tree.

    LeaderElectionError
    ├── ConfigurationError         an argument is missing, malformed or inconsistent; the message
    │   │                          names the argument and the rule it breaks
    │   └── MissingExtraError      a backend's optional dependency is not installed; the message
    │                              says which extra to install
    ├── BackendError               the election backend (lease store) failed
    │   ├── LeaseLostError         the lease is definitely someone else's now: step down at once
    │   ├── StorageUnavailableError
    │   │                          no answer, a timeout or a server error: may heal by itself, so
    │   │                          a leader keeps trying until its local deadline
    │   └── StorageRejectedError   the storage refuses us for good (credentials, permissions, an
    │                              API version it does not speak): retrying cannot help
    └── StaleTermError             the fencing check refused a write: a newer leader exists

Messages never contain secrets (account keys, connection strings, SAS tokens, passwords).
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "ConfigurationError",
    "LeaderElectionError",
    "LeaseLostError",
    "MissingExtraError",
    "StaleTermError",
    "StorageRejectedError",
    "StorageUnavailableError",
]


class LeaderElectionError(Exception):
    """Base class of every error raised by this library."""


class ConfigurationError(LeaderElectionError):
    """An argument is invalid. ``setting`` names it (an argument of the library, or a setting of
    the program that passed it on), ``rule`` says what it breaks."""

    def __init__(self, setting: str, rule: str) -> None:
        super().__init__(f"{setting}: {rule}")
        self.setting = setting
        self.rule = rule


class MissingExtraError(ConfigurationError):
    """A backend needs a package that is not installed: ``pip install 'distributed-mutex[extra]'``."""

    def __init__(self, backend: str, module: str, extra: str) -> None:
        super().__init__(backend, f"needs the module {module!r}, which is not installed: "
                                  f"pip install 'distributed-mutex[{extra}]'")
        self.extra = extra


class BackendError(LeaderElectionError):
    """The election backend could not do what was asked."""

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


class LeaseLostError(BackendError):
    """The lease was broken, changed, expired and taken, or its record vanished."""


class StorageUnavailableError(BackendError):
    """The storage did not answer in time or answered with a transient failure."""


class StorageRejectedError(BackendError):
    """The storage refuses our requests for a reason that retrying will not fix."""


class StaleTermError(LeaderElectionError):
    """A write was refused because the data store has seen a newer leadership term."""

    def __init__(self, own_term: int, stored_term: int, reason: str | None = None) -> None:
        super().__init__(
            "write refused by the fencing check: "
            + (reason or f"the store has term {stored_term}, this leader has term {own_term}")
        )
        self.own_term = own_term
        self.stored_term = stored_term
