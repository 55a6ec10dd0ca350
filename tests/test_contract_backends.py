"""The ElectionBackend contract (DistributedMutex.testing.contract) on the real backends: Azurite,
a ZooKeeper server, three Raft peers on loopback, PostgreSQL (direct and through PgBouncer in
transaction pooling mode) and the machine's Redis server (a key prefix per test), as a third-party
backend would run it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from DistributedMutex.backend import ElectionBackend
from DistributedMutex.backends.azure import AzureBlobLeaseBackend
from DistributedMutex.backends.postgres import PostgresLeaseBackend
from DistributedMutex.backends.raft import RaftBackend
from DistributedMutex.backends.redis import RedisLeaseBackend
from DistributedMutex.backends.zookeeper import ZooKeeperBackend
from DistributedMutex.testing.contract import BackendContract
from harness.postgres import PgBouncer, PostgresServer
from harness.services import Azurite, ZooKeeperServer, rebindable_port

MakeBackend = Callable[[], ElectionBackend]


class TestAzureBlobLeaseBackend(BackendContract):
    handover_within = 2.0  # a released blob lease is free at once; its lease lasts 15 s

    @pytest.fixture
    def make_backend(self, azurite: Azurite, container_name: str) -> Iterator[MakeBackend]:
        made: list[AzureBlobLeaseBackend] = []

        def make() -> ElectionBackend:
            made.append(AzureBlobLeaseBackend(azurite.connection_string, container_name, "contract"))
            return made[-1]

        yield make
        for backend in made:
            backend.close()


class TestZooKeeperBackend(BackendContract):
    handover_within = 2.0  # the next contender in line leads once our znode is deleted; a session lasts 4 s

    @pytest.fixture
    def make_backend(self, zookeeper_server: ZooKeeperServer) -> Iterator[MakeBackend]:
        path = f"/contract-{uuid.uuid4().hex[:12]}"
        made: list[ZooKeeperBackend] = []

        def make() -> ElectionBackend:
            made.append(ZooKeeperBackend(zookeeper_server.hosts, path, session_timeout=4.0))
            return made[-1]

        yield make
        for backend in made:
            backend.close()


class TestRaftBackend(BackendContract):
    # release hands leadership over at once (TimeoutNow); waiting for the lease to run out and a
    # new election would take at least the 1 s minimum election timeout.
    handover_within = 0.9

    @pytest.fixture
    def make_backend(self, tmp_path: Path) -> Iterator[MakeBackend]:
        peers = {name: ("127.0.0.1", rebindable_port()) for name in ("a", "b", "c")}
        free = list(peers)
        made: list[RaftBackend] = []

        def make() -> ElectionBackend:
            made.append(RaftBackend(peers, free.pop(0), tmp_path, election_timeout=(1.0, 2.0)))
            return made[-1]

        yield make
        for backend in made:
            backend.close()


class TestPostgresLeaseBackend(BackendContract):
    handover_within = 1.0  # a released row is free at once: the next statement takes it

    @pytest.fixture
    def make_backend(self, postgres_server: PostgresServer, lease_table: str) -> Iterator[MakeBackend]:
        made: list[PostgresLeaseBackend] = []

        def make() -> ElectionBackend:
            made.append(PostgresLeaseBackend(postgres_server.url, "contract", table=lease_table))
            return made[-1]

        yield make
        for backend in made:
            backend.close()


class TestPostgresLeaseBackendThroughPgBouncer(BackendContract):
    """The same contract with every statement through PgBouncer in transaction pooling mode, whose
    pool of four server connections is shared by all contenders: no session state may be relied on."""

    handover_within = 1.0

    @pytest.fixture
    def make_backend(self, pgbouncer: PgBouncer, postgres_server: PostgresServer,
                     lease_table: str) -> Iterator[MakeBackend]:
        made: list[PostgresLeaseBackend] = []

        def make() -> ElectionBackend:
            made.append(PostgresLeaseBackend(pgbouncer.url, "contract", table=lease_table, pooled=True,
                                             notify_url=postgres_server.url))
            return made[-1]

        yield make
        for backend in made:
            backend.close()


class TestRedisLeaseBackend(BackendContract):
    # release deletes the key and publishes on the election's channel; a lease lasts 5 s
    handover_within = 1.0

    @pytest.fixture
    def make_backend(self, redis_url: str, redis_prefix: str) -> Iterator[MakeBackend]:
        made: list[RedisLeaseBackend] = []

        def make() -> ElectionBackend:
            made.append(RedisLeaseBackend(redis_url, redis_prefix))
            return made[-1]

        yield make
        for backend in made:
            backend.close()
