"""Leader election for Python: run work on exactly one of N identical instances.

    from DistributedMutex import DistributedMutex, AzureBlobLeaseBackend, Identity

    mutex = DistributedMutex(lead, work, backend=AzureBlobLeaseBackend(conn, "c", "b"),
                             identity=Identity("me"))
    mutex.run()   # until SIGINT/SIGTERM

ZooKeeperBackend and RaftBackend are imported on first use: kazoo only for those who use it.
"""

from typing import Any

from .azure_lease import AzureBlobLeaseBackend
from .backend import ElectionBackend, Held, Identity, LeaderRecord, Lease
from .errors import (
    BackendError,
    ConfigurationError,
    LeaderElectionError,
    LeaseLostError,
    StaleTermError,
    StorageRejectedError,
    StorageUnavailableError,
    StoreError,
    StoreUnavailableError,
)
from .mutex import DistributedMutex, Role, RoleContext
from .timing import ElectionTiming

__all__ = [
    "AzureBlobLeaseBackend", "BackendError", "ConfigurationError", "DistributedMutex",
    "ElectionBackend", "ElectionTiming", "Held", "Identity", "LeaderElectionError", "LeaderRecord",
    "Lease", "LeaseLostError", "RaftBackend", "Role", "RoleContext", "StaleTermError", "StorageRejectedError",
    "StorageUnavailableError", "StoreError", "StoreUnavailableError", "ZooKeeperBackend",
]


def __getattr__(name: str) -> Any:
    if name == "ZooKeeperBackend":
        from .zookeeper import ZooKeeperBackend
        return ZooKeeperBackend
    if name == "RaftBackend":
        from .raft import RaftBackend
        return RaftBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
