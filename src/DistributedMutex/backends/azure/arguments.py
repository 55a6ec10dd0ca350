"""AzureBlobLeaseBackend's arguments, checked, and the election timing its lease implies.

Checks take ``name``, the argument in the caller's terms (the library's own by default; a program
that reads its settings passes their names through the backend's ``names``).
"""

from __future__ import annotations

import re

from DistributedMutex.errors import ConfigurationError
from DistributedMutex.timing import ElectionTiming

# Azure's range of finite leases, in whole seconds. It also grants infinite ones (-1): never here,
# a crashed leader would hold it forever.
AZURE_MIN_LEASE = 15
AZURE_MAX_LEASE = 60
DEFAULT_LEASE_DURATION = 15
DEFAULT_CALL_TIMEOUT = 3.0
# azure-storage-blob 12.31 speaks 2026-10-06 by default; Azurite 3.37 accepts at most 2026-06-06.
# Pinning a version both understand lets a new SDK work against an older emulator (and Azure).
DEFAULT_API_VERSION = "2026-06-06"
# Azure's naming rules: what the service would refuse with 400 InvalidResourceName at the first call.
CONTAINER_NAME = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
CONTAINER_NAME_RULE = ("3-63 lowercase letters, digits and single hyphens, starting and ending with a letter "
                       "or digit")
MAX_BLOB_NAME = 1024


def blob_timing(lease_duration: int) -> ElectionTiming:
    """Renew three times per lease (15 s: every 5 s), look for a free lease every 2 s, stop acting
    2 s before the lease can end."""
    return ElectionTiming(lease_duration=lease_duration, renew_interval=lease_duration / 3,
                          acquire_interval=2, safety_margin=2)


def check_lease_duration(name: str, lease_duration: object) -> int:
    if isinstance(lease_duration, bool) or not isinstance(lease_duration, int):
        raise ConfigurationError(name, f"must be a whole number of seconds from {AZURE_MIN_LEASE} to "
                                       f"{AZURE_MAX_LEASE} (Azure's lease range), got {lease_duration!r}")
    if not AZURE_MIN_LEASE <= lease_duration <= AZURE_MAX_LEASE:
        raise ConfigurationError(name, f"must be from {AZURE_MIN_LEASE} to {AZURE_MAX_LEASE} seconds "
                                       f"(Azure's lease range), got {lease_duration}")
    return lease_duration


def check_call_timeout(name: str, call_timeout: object, lease_duration: int) -> float:
    """The socket timeouts of each storage call: no call may outlast the lease it renews."""
    if (isinstance(call_timeout, bool) or not isinstance(call_timeout, (int, float))
            or not 0 < call_timeout < lease_duration):
        raise ConfigurationError(name, f"must be a number of seconds above 0 and below the {lease_duration} s "
                                       f"lease, got {call_timeout!r}")
    return float(call_timeout)


def check_container_name(name: str, container_name: object) -> str:
    if not isinstance(container_name, str) or not CONTAINER_NAME.match(container_name):
        raise ConfigurationError(name, f"must be {CONTAINER_NAME_RULE} (Azure's rule for container names), "
                                       f"got {container_name!r}")
    return container_name


def check_blob_name(name: str, blob_name: object) -> str:
    if (not isinstance(blob_name, str) or not 1 <= len(blob_name) <= MAX_BLOB_NAME
            or blob_name.endswith((".", "/", "\\")) or not blob_name.isprintable()):
        raise ConfigurationError(name, f"must be 1-{MAX_BLOB_NAME} printable characters, not ending in a dot or a "
                                       f"slash (Azure's rule for blob names), got {blob_name!r}")
    return blob_name
