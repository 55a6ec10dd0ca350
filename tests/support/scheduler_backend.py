"""The election settings of the process tests of ``distributed-mutex run`` and the scheduler
integrations: the environment a user would set (ELECTION_BACKEND and the backend's settings,
INSTANCE_ID), which the wrapper and both integrations read when they are given no backend of their own.

``shared(kind, request)`` is what every replica of one test shares (one election of the test's own:
a ZooKeeper path, a PostgreSQL lease table, a Redis key prefix), ``environment(...)`` what one
replica adds (its id; Raft: the peers and its own id).

Short leases, so that a failover takes seconds: PostgreSQL and Redis are given their shortest lease
plus a second (a 2 s lease leaves a 1 s safety margin and renews every 0.4 s, which a loaded machine's
scheduling delays can eat into); PostgreSQL's call timeout must then be below its renew interval.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest

ZOOKEEPER_SESSION = 4.0  # seconds: the test server's tick is 0.5 s, so it grants what is asked
POSTGRES_LEASE = 3.0  # renew every 0.8 s, stop acting 1 s before the lease can end
POSTGRES_CALL_TIMEOUT = 0.5  # below the 0.8 s renew interval (settings refuse more)
REDIS_LEASE = 3.0  # renew every 0.6 s, stop acting 0.6 s before the lease can end
AZURE_LEASE = 15  # Azure's shortest lease; renewed every 5 s, contenders try every second
KINDS = ("raft", "zookeeper", "postgres", "redis", "azure")
LONG_FORM = "SCHEDULER_FAULT_ROUNDS" in os.environ  # make chaos sets it: every backend then


def kinds(short: tuple[str, ...]) -> list[Any]:
    """The backends a process test runs on: all of KINDS in the long form, ``short`` in make test
    (the others skipped, saying so): each of these tests takes 20-35 s per backend, and make test
    keeps its time by running each integration on one lease backend, the other on the other."""
    skip = pytest.mark.skipif(not LONG_FORM, reason="the long form only (SCHEDULER_FAULT_ROUNDS=N, make chaos)")
    return [kind if kind in short else pytest.param(kind, marks=skip) for kind in KINDS]


def shared(kind: str, request: pytest.FixtureRequest, *,
           zookeeper_session: float = ZOOKEEPER_SESSION) -> dict[str, str]:
    """The settings every replica of this test shares: a new election on the machine's (or the
    session's) server, removed after the test by the fixtures that make it."""
    if kind == "raft":
        return {"ELECTION_BACKEND": kind}
    if kind == "zookeeper":
        return {"ELECTION_BACKEND": kind, "ZOOKEEPER_HOSTS": request.getfixturevalue("zookeeper_server").hosts,
                "ZOOKEEPER_PATH": f"/election-{uuid.uuid4().hex[:10]}",
                "ZOOKEEPER_SESSION_TIMEOUT": f"{zookeeper_session:g}"}
    if kind == "postgres":
        server = request.getfixturevalue("postgres_server")
        return {"ELECTION_BACKEND": kind, "POSTGRES_URL": server.url,
                "POSTGRES_TABLE": request.getfixturevalue("lease_table"), "POSTGRES_ELECTION": "job", "POSTGRES_LEASE_DURATION": f"{POSTGRES_LEASE:g}",
                "POSTGRES_CALL_TIMEOUT": f"{POSTGRES_CALL_TIMEOUT:g}"}
    if kind == "redis":
        return {"ELECTION_BACKEND": kind, "REDIS_URL": request.getfixturevalue("redis_url"),
                "REDIS_KEY_PREFIX": request.getfixturevalue("redis_prefix"), "REDIS_LEASE_DURATION": f"{REDIS_LEASE:g}"}
    if kind == "azure":
        return {"ELECTION_BACKEND": kind,
                "AZURE_STORAGE_CONNECTION_STRING": request.getfixturevalue("azurite").connection_string,
                "CONTAINER_NAME": f"sched-{uuid.uuid4().hex[:12]}", "BLOB_NAME": "job",
                "LEASE_DURATION": str(AZURE_LEASE), "RENEW_INTERVAL": "5", "ACQUIRE_INTERVAL": "1"}
    raise ValueError(f"no such backend here: {kind}")


def environment(kind: str, node: str, *, peers: dict[str, tuple[str, int]], data_dir: Path,
                shared: dict[str, str]) -> dict[str, str]:
    """What a replica named ``node`` needs in its environment for ``kind``, ``shared`` included."""
    if kind == "raft":
        return {**shared, "ELECTION_BACKEND": kind, "INSTANCE_ID": node, "RAFT_ID": node,
                "RAFT_DATA_DIR": str(data_dir),
                "RAFT_PEERS": ",".join(f"{name}={host}:{port}" for name, (host, port) in peers.items())}
    return {**shared, "INSTANCE_ID": node}
