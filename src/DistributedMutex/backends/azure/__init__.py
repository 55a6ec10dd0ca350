"""The blob-lease backend: a lease on one Azure Storage blob (extra ``azure``).

    lease.py      AzureBlobLeaseBackend: acquire, renew, release, advance_term on one blob's lease
    metadata.py   the leader's record in the blob's metadata (term, instance, host, pid)
    arguments.py  its arguments checked, and the election timing a lease duration implies
    clients.py    the SDK's clients: no SDK retries, short timeouts, its HTTP log at DEBUG
    failures.py   the SDK's errors turned into the library's, naming the argument to fix
    sas.py        reading a container SAS URL (its expiry) without showing its signature
"""

from __future__ import annotations

from DistributedMutex.backends import is_missing, missing_extra

try:
    from DistributedMutex.backends.azure.lease import AzureBlobLeaseBackend
except ModuleNotFoundError as exc:
    if not is_missing(exc, "azure"):
        raise
    AzureBlobLeaseBackend = missing_extra("AzureBlobLeaseBackend", "azure.storage.blob", "azure")  # type: ignore[misc]

__all__ = ["AzureBlobLeaseBackend"]
