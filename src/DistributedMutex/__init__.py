"""Leader election for Python: run work on exactly one of N identical instances.

    from DistributedMutex import DistributedMutex, RaftBackend

    def lead(ctx):                       # runs on one instance at a time
        while ctx.sleep(1):              # False once this leadership ends
            print("leading with fencing token", ctx.term)

    DistributedMutex(lead, backend=RaftBackend(peers, node_id="a", data_dir="state")).run()

The backends are imported on first use, so that their third-party packages (azure-storage-blob,
kazoo, psycopg) are loaded only by those who use them; ``DistributedMutex.testing`` holds an in-memory
backend for tests.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from DistributedMutex.backend import ElectionBackend, Held, Identity, LeaderRecord, Lease
from DistributedMutex.errors import (
    BackendError,
    ConfigurationError,
    LeaderElectionError,
    LeaseLostError,
    MissingExtraError,
    StaleTermError,
    StorageRejectedError,
    StorageUnavailableError,
)
from DistributedMutex.fencing import Fence, fenced_update
from DistributedMutex.mutex import DistributedMutex, LeaderContext, Role, RoleContext, StepDownReason, WorkerContext
from DistributedMutex.timing import ElectionTiming
from DistributedMutex.watching import LeaderObserver, ObservedLeader, observe, observe_async

if TYPE_CHECKING:  # imported lazily at run time: see __getattr__
    from DistributedMutex.backends.azure import AzureBlobLeaseBackend
    from DistributedMutex.backends.postgres import PostgresLeaseBackend
    from DistributedMutex.backends.raft import RaftBackend
    from DistributedMutex.backends.redis import RedisLeaseBackend
    from DistributedMutex.backends.zookeeper import ZooKeeperBackend

__all__ = [
    "AzureBlobLeaseBackend",
    "BackendError",
    "ConfigurationError",
    "DistributedMutex",
    "ElectionBackend",
    "ElectionTiming",
    "Fence",
    "Held",
    "Identity",
    "LeaderContext",
    "LeaderElectionError",
    "LeaderObserver",
    "LeaderRecord",
    "Lease",
    "LeaseLostError",
    "MissingExtraError",
    "ObservedLeader",
    "PostgresLeaseBackend",
    "RaftBackend",
    "RedisLeaseBackend",
    "Role",
    "RoleContext",
    "StaleTermError",
    "StepDownReason",
    "StorageRejectedError",
    "StorageUnavailableError",
    "WorkerContext",
    "ZooKeeperBackend",
    "fenced_update",
    "observe",
    "observe_async",
]

_LAZY = {
    "AzureBlobLeaseBackend": "DistributedMutex.backends.azure",
    "ZooKeeperBackend": "DistributedMutex.backends.zookeeper",
    "RaftBackend": "DistributedMutex.backends.raft",
    "PostgresLeaseBackend": "DistributedMutex.backends.postgres",
    "RedisLeaseBackend": "DistributedMutex.backends.redis",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(__all__)
