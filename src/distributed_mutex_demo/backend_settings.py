"""The backends' settings: read by the library (DistributedMutex.settings.backends), which
``distributed-mutex run`` reads them with too; the names here are the demo's way in."""

from __future__ import annotations

from DistributedMutex.settings.backends import (
    AZURE,
    AZURE_NAMES,
    BACKENDS,
    RAFT,
    RAFT_NAMES,
    RAFT_TLS_SETTINGS,
    REDIS,
    REDIS_NAMES,
    TIMING_NAMES,
    ZOOKEEPER,
    ZOOKEEPER_NAMES,
    RaftSettings,
    RedisSettings,
    ZooKeeperSettings,
    parse_backend,
    parse_election_timeout,
    parse_raft_peers,
    read_raft,
    read_redis,
    read_zookeeper,
)

__all__ = [
    "AZURE", "AZURE_NAMES", "BACKENDS", "RAFT", "RAFT_NAMES", "RAFT_TLS_SETTINGS", "REDIS", "REDIS_NAMES",
    "TIMING_NAMES", "ZOOKEEPER", "ZOOKEEPER_NAMES", "RaftSettings", "RedisSettings", "ZooKeeperSettings",
    "parse_backend", "parse_election_timeout", "parse_raft_peers", "read_raft", "read_redis", "read_zookeeper",
]
