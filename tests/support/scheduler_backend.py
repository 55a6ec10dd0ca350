"""The election backend of the scheduler integrations' process tests, from the environment:

    SCHEDULER_BACKEND=raft        RAFT_PEERS (JSON {node: [host, port]}), RAFT_ID, RAFT_DATA_DIR
    SCHEDULER_BACKEND=zookeeper   ZOOKEEPER_HOSTS, ZOOKEEPER_PATH, ZOOKEEPER_SESSION (seconds)
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from DistributedMutex import ElectionBackend, RaftBackend, ZooKeeperBackend


def backend_from_environment() -> ElectionBackend:
    kind = os.environ["SCHEDULER_BACKEND"]
    if kind == "raft":
        peers = {name: (host, int(port)) for name, (host, port) in json.loads(os.environ["RAFT_PEERS"]).items()}
        return RaftBackend(peers, os.environ["RAFT_ID"], Path(os.environ["RAFT_DATA_DIR"]))
    if kind == "zookeeper":
        return ZooKeeperBackend(os.environ["ZOOKEEPER_HOSTS"], os.environ["ZOOKEEPER_PATH"],
                                session_timeout=float(os.environ["ZOOKEEPER_SESSION"]))
    raise SystemExit(f"SCHEDULER_BACKEND: raft or zookeeper, got {kind!r}")


def environment(kind: str, node: str, *, peers: str, data_dir: Path, zookeeper_hosts: str | None,
                zookeeper_path: str, session: float) -> dict[str, str]:
    """What a replica named ``node`` needs in its environment for ``kind``."""
    if kind == "raft":
        return {"SCHEDULER_BACKEND": kind, "RAFT_PEERS": peers, "RAFT_ID": node, "RAFT_DATA_DIR": str(data_dir)}
    assert zookeeper_hosts is not None
    return {"SCHEDULER_BACKEND": kind, "ZOOKEEPER_HOSTS": zookeeper_hosts, "ZOOKEEPER_PATH": zookeeper_path,
            "ZOOKEEPER_SESSION": f"{session:g}", "RAFT_ID": node}
