"""How the backend's SDK clients are made: no retries, short timeouts, and quiet.

The election loop retries by itself, on its own schedule: the SDK's default retry policy can hold
one call for about a minute, four times a 15 s lease. And the SDK logs every request and response
at INFO with its headers (azure-core's HttpLoggingPolicy: about 20 lines a second for one
instance), which would drown a user's own INFO logs: our clients log those lines at DEBUG, on the
same logger, through the policy's ``logger`` keyword. To see them, set the logger
``azure.core.pipeline.policies.http_logging_policy`` to DEBUG. No logger's level is changed here.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from DistributedMutex.backends.azure.arguments import check_call_timeout, check_lease_duration
from DistributedMutex.backends.azure.failures import Access
from DistributedMutex.errors import ConfigurationError

HTTP_LOGGER = "azure.core.pipeline.policies.http_logging_policy"


class QuietHttpLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The SDK's HTTP logger, with its request and response lines moved from INFO down to DEBUG
    (warnings and errors keep their level). The policy asks ``isEnabledFor`` before building its
    lines, so they cost nothing unless DEBUG is on."""

    def __init__(self) -> None:
        super().__init__(logging.getLogger(HTTP_LOGGER), {})

    def isEnabledFor(self, level: int) -> bool:  # noqa: N802 - logging's name
        return bool(self.logger.isEnabledFor(_quieter(level)))

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        super().log(_quieter(level), msg, *args, **kwargs)


def _quieter(level: int) -> int:
    return level if level >= logging.WARNING else min(level, logging.DEBUG)


_QUIET = QuietHttpLog()


def client_options(api_version: str, call_timeout: float) -> dict[str, Any]:
    """Keyword arguments for BlobServiceClient / ContainerClient (the policies read them)."""
    return {"api_version": api_version, "retry_total": 0, "connection_timeout": call_timeout,
            "read_timeout": call_timeout, "logger": _QUIET}


def checked_options(access: Access, lease_duration: int, call_timeout: float, api_version: str) -> dict[str, Any]:
    """The backend's arguments checked (named in the caller's terms), then the clients' options."""
    check_lease_duration(access.name("lease_duration"), lease_duration)
    return client_options(api_version, check_call_timeout(access.name("call_timeout"), call_timeout, lease_duration))


@contextmanager
def sdk_refusal(access: Access) -> Iterator[None]:
    """The SDK refuses a malformed connection string or URL with a ValueError whose text may quote
    it, secret and all: say which argument, never the value."""
    try:
        yield
    except ValueError:
        raise ConfigurationError(access.name(access.argument), "is not accepted by the Azure SDK") from None
