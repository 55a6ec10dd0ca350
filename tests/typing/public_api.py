"""What a user's type checker sees of the public API; `make test` runs mypy --strict on this file.

Type-checked only, never run (pytest does not collect it). The backends are imported lazily at run
time (DistributedMutex.__getattr__), so a type checker sees them only through the package's
TYPE_CHECKING imports: without those, ``from DistributedMutex import RaftBackend`` would be Any, and
every call below would pass unchecked. Each assert_type fails if a name arrives as Any or as another
class, and each ``type: ignore`` fails as unused (strict mode) if the bad call it marks went unseen.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from DistributedMutex import (
    AzureBlobLeaseBackend,
    DistributedMutex,
    ElectionBackend,
    PostgresLeaseBackend,
    RaftBackend,
    RoleContext,
    ZooKeeperBackend,
)
from DistributedMutex.backends.azure.lease import AzureBlobLeaseBackend as AzureClass
from DistributedMutex.backends.postgres.backend import PostgresLeaseBackend as PostgresClass
from DistributedMutex.backends.raft.backend import RaftBackend as RaftClass
from DistributedMutex.backends.zookeeper.backend import ZooKeeperBackend as ZooKeeperClass

if TYPE_CHECKING:
    from typing_extensions import assert_type


def lead(ctx: RoleContext) -> None:
    while ctx.sleep(1):
        print("leading in term", ctx.term)


def raft(data_dir: Path) -> None:
    backend = RaftBackend(peers={"a": ("127.0.0.1", 7001)}, node_id="a", data_dir=data_dir,
                          election_timeout=(1.0, 2.0))
    assert_type(backend, RaftClass)
    RaftBackend(peers=["a"], node_id="a", data_dir=data_dir, election_timeout=(1.0, 2.0))  # type: ignore[arg-type]
    DistributedMutex(lead, backend=backend).run()


def zookeeper() -> None:
    backend = ZooKeeperBackend("127.0.0.1:2181")
    assert_type(backend, ZooKeeperClass)
    ZooKeeperBackend(2181)  # type: ignore[arg-type]
    as_protocol: ElectionBackend = backend
    DistributedMutex(lead, backend=as_protocol).run()


def azure(connection_string: str) -> None:
    backend = AzureBlobLeaseBackend(connection_string, "container", "blob")
    assert_type(backend, AzureClass)
    AzureBlobLeaseBackend(connection_string, "container", "blob", lease_duration="15")  # type: ignore[arg-type]
    DistributedMutex(lead, backend=backend).run()


def postgres(url: str) -> None:
    backend = PostgresLeaseBackend(url, "weather", lease_duration=5)
    assert_type(backend, PostgresClass)
    PostgresLeaseBackend(url, "weather", lease_duration="5")  # type: ignore[arg-type]
    DistributedMutex(lead, backend=backend).run()
