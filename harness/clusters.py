"""One cluster of demo instances per election backend, with the same shape for the conformance
suite and the benchmark: the settings of instance ``name``, and the failover bounds the backend
promises (from the signal to the next leader's first act)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from harness.services import Azurite, rebindable_port

# Every backend's cluster in this suite has these members (a Raft cluster is exactly them).
MEMBERS = ("node-a", "node-b", "node-c")


class BackendCluster(Protocol):
    backend: str
    crash_bound: float  # seconds from SIGKILL of the leader to the next leader's first act
    graceful_bound: float  # seconds from SIGTERM of the leader to the next leader's first act

    def env_for(self, name: str) -> dict[str, str]: ...


@dataclass
class AzureCluster:
    azurite: Azurite
    container: str = field(default_factory=lambda: f"conf-{uuid.uuid4().hex[:16]}")
    backend: str = "azure"
    # The lease runs out (15 s) and a contender's next attempt (0.5 s) takes it; 3 s for the rest.
    crash_bound: float = 15 + 0.5 + 3
    # Released at once: the next attempt takes it.
    graceful_bound: float = 0.5 + 2.5

    def env_for(self, name: str) -> dict[str, str]:
        return {"ELECTION_BACKEND": "azure", "AZURE_STORAGE_CONNECTION_STRING": self.azurite.connection_string,
                "CONTAINER_NAME": self.container, "LEASE_DURATION": "15", "RENEW_INTERVAL": "5",
                "ACQUIRE_INTERVAL": "0.5"}


@dataclass
class ZooKeeperCluster:
    hosts: str
    session_timeout: float = 4.0
    path: str = field(default_factory=lambda: f"/conformance-{uuid.uuid4().hex[:12]}")
    backend: str = "zookeeper"
    crash_bound: float = 0.0
    # The leader deletes its znode; the next one's watch fires (the issue: within a second).
    graceful_bound: float = 1.0

    def __post_init__(self) -> None:
        # The server expires a session up to one tick after its timeout (the test server's tick is
        # 0.5 s, ZooKeeper's default 2 s); then the next contender's watch fires.
        self.crash_bound = self.session_timeout + 2

    def env_for(self, name: str) -> dict[str, str]:
        return {"ELECTION_BACKEND": "zookeeper", "ZOOKEEPER_HOSTS": self.hosts, "ZOOKEEPER_PATH": self.path,
                "ZOOKEEPER_SESSION_TIMEOUT": f"{self.session_timeout:g}"}


@dataclass
class RaftCluster:
    data_dir: Path
    members: tuple[str, ...] = MEMBERS
    election_timeout_ms: tuple[int, int] = (1000, 2000)
    backend: str = "raft"
    crash_bound: float = 0.0
    # The leader hands over (TimeoutNow): the next one campaigns at once.
    graceful_bound: float = 1.0
    peers: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.peers = {name: rebindable_port() for name in self.members}  # members restart on them
        # The issue: a new leader within 2 x the maximum election timeout.
        self.crash_bound = 2 * self.election_timeout_ms[1] / 1000

    def env_for(self, name: str) -> dict[str, str]:
        low, high = self.election_timeout_ms
        return {"ELECTION_BACKEND": "raft",
                "RAFT_PEERS": ",".join(f"{peer}=127.0.0.1:{port}" for peer, port in self.peers.items()),
                "RAFT_ID": name, "RAFT_DATA_DIR": str(self.data_dir), "RAFT_ELECTION_TIMEOUT": f"{low}-{high}"}


@dataclass
class PostgresCluster:
    url: str  # libpq URL of the database (or of PgBouncer in front of it, with pooled and notify_url)
    table: str = field(default_factory=lambda: f"conf_{uuid.uuid4().hex[:16]}")
    notify_url: str | None = None
    pooled: bool = False
    backend: str = "postgres"
    # The default 5 s lease runs out by the server's clock; a contender's next attempt (0.5 s)
    # takes it; 2 s for three processes on two busy cores.
    crash_bound: float = 5 + 0.5 + 2
    # Released at once and NOTIFYed: a listening contender tries at once (polling: within 0.5 s).
    graceful_bound: float = 1.0

    def env_for(self, name: str) -> dict[str, str]:
        env = {"ELECTION_BACKEND": "postgres", "POSTGRES_URL": self.url, "POSTGRES_TABLE": self.table,
               "POSTGRES_POOLED": "true" if self.pooled else "false"}
        if self.notify_url:
            env["POSTGRES_NOTIFY_URL"] = self.notify_url
        return env


@dataclass
class RedisCluster:
    """Three instances on one Redis server, under a key prefix of their own (``cleanup`` deletes it)."""

    url: str
    lease_duration: float = 5.0
    prefix: str = field(default_factory=lambda: f"dm-conformance-{uuid.uuid4().hex[:12]}")
    backend: str = "redis"
    crash_bound: float = 0.0
    # The leader deletes its key and publishes: the others, subscribed, try at once.
    graceful_bound: float = 1.0

    def __post_init__(self) -> None:
        # The key expires one lease after the last renewal; a contender that found it held has a
        # timer set to that moment. A second for three processes on 2 busy cores.
        self.crash_bound = self.lease_duration + 1.5

    def env_for(self, name: str) -> dict[str, str]:
        return {"ELECTION_BACKEND": "redis", "REDIS_URL": self.url, "REDIS_KEY_PREFIX": self.prefix,
                "REDIS_LEASE_DURATION": f"{self.lease_duration:g}"}
