"""The election settings of the scheduler integrations' process tests: the environment a user of
`distributed-mutex run` would set (ELECTION_BACKEND and the backend's settings, INSTANCE_ID), which
both integrations read when they are given no backend of their own.
"""

from __future__ import annotations

from pathlib import Path


def environment(kind: str, node: str, *, peers: dict[str, tuple[str, int]], data_dir: Path,
                zookeeper_hosts: str | None, zookeeper_path: str, session: float) -> dict[str, str]:
    """What a replica named ``node`` needs in its environment for ``kind`` (raft or zookeeper)."""
    if kind == "raft":
        return {"ELECTION_BACKEND": kind, "INSTANCE_ID": node, "RAFT_ID": node, "RAFT_DATA_DIR": str(data_dir),
                "RAFT_PEERS": ",".join(f"{name}={host}:{port}" for name, (host, port) in peers.items())}
    assert zookeeper_hosts is not None
    return {"ELECTION_BACKEND": kind, "INSTANCE_ID": node, "ZOOKEEPER_HOSTS": zookeeper_hosts,
            "ZOOKEEPER_PATH": zookeeper_path, "ZOOKEEPER_SESSION_TIMEOUT": f"{session:g}"}
