"""The blob-lease backend: a lease on one Azure Storage blob (extra ``azure``).

    lease.py  AzureBlobLeaseBackend
    sas.py    reading a container SAS URL (its expiry) without showing its signature
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
