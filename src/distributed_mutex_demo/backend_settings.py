"""The settings of the three election backends, and the timing each one implies.

    ELECTION_BACKEND=azure      a lease on one blob (AZURE_STORAGE_*, CONTAINER_NAME, BLOB_NAME,
                                LEASE_DURATION, RENEW_INTERVAL, ACQUIRE_INTERVAL)
    ELECTION_BACKEND=zookeeper  the sequential-ephemeral-znode recipe (ZOOKEEPER_HOSTS,
                                ZOOKEEPER_PATH, ZOOKEEPER_SESSION_TIMEOUT)
    ELECTION_BACKEND=raft       Raft's election among the instances themselves (RAFT_PEERS,
                                RAFT_ID, RAFT_DATA_DIR, RAFT_ELECTION_TIMEOUT)

Each backend's guarantee sets the loop's timing (timing.py states the invariants): the blob lease
lasts LEASE_DURATION after a renewal; a ZooKeeper session outlives a request the server answered
by the session timeout; a Raft leader's followers refuse to elect anyone else for the minimum
election timeout after they last heard from it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from DistributedMutex.addresses import host_port
from DistributedMutex.backends.zookeeper.arguments import (
    parse_session_timeout,
    zookeeper_timing,
)
from DistributedMutex.errors import ConfigurationError
from DistributedMutex.timing import ElectionTiming

AZURE, ZOOKEEPER, RAFT = "azure", "zookeeper", "raft"
BACKENDS = (AZURE, ZOOKEEPER, RAFT)
# The settings only one backend reads: set for another backend, they are ignored, and said so.
OWN_SETTINGS = {
    AZURE: ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_CONTAINER_SAS_URL", "AZURE_STORAGE_ACCOUNT_URL",
            "CONTAINER_NAME", "BLOB_NAME", "LEASE_DURATION", "RENEW_INTERVAL", "ACQUIRE_INTERVAL"),
    ZOOKEEPER: ("ZOOKEEPER_HOSTS", "ZOOKEEPER_PATH", "ZOOKEEPER_SESSION_TIMEOUT"),
    RAFT: ("RAFT_PEERS", "RAFT_ID", "RAFT_DATA_DIR", "RAFT_ELECTION_TIMEOUT"),
}
_PEER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class ZooKeeperSettings:
    hosts: str  # host:port,host:port (as kazoo takes it)
    path: str
    session_timeout: float  # seconds

    def __post_init__(self) -> None:
        # Here too, not only in config.py: callers build these settings themselves (README).
        parse_session_timeout("ZOOKEEPER_SESSION_TIMEOUT", self.session_timeout)

    def timing(self) -> ElectionTiming:
        return zookeeper_timing(self.session_timeout)


@dataclass(frozen=True)
class RaftSettings:
    peers: dict[str, tuple[str, int]]  # id -> (host, port), the whole cluster
    node_id: str
    data_dir: Path
    election_timeout: tuple[float, float]  # seconds, (min, max)

    def timing(self) -> ElectionTiming:
        """The leader's lease is the minimum election timeout from its newest heartbeat round a
        majority answered; renewing reads it from the local node, so it can be frequent."""
        lease = self.election_timeout[0]
        # At least 0.1 s of margin: below that, a Python thread's scheduling delay is not negligible.
        return ElectionTiming(lease_duration=lease, renew_interval=lease / 5, acquire_interval=lease / 2,
                              safety_margin=max(lease / 4, 0.1))


def parse_backend(name: str, value: str) -> str:
    backend = value.strip().lower()
    if backend not in BACKENDS:
        raise ConfigurationError(name, f"must be one of {', '.join(BACKENDS)}, got {value.strip()!r}")
    return backend


def parse_raft_peers(name: str, value: str) -> dict[str, tuple[str, int]]:
    peers: dict[str, tuple[str, int]] = {}
    for entry in (part.strip() for part in value.split(",") if part.strip()):
        peer_id, sep, address = entry.partition("=")
        peer_id = peer_id.strip()
        if not sep or not _PEER_ID.match(peer_id):
            raise ConfigurationError(name, f"{entry!r} is not id=host:port (an id of letters, digits, . _ -)")
        if peer_id in peers:
            raise ConfigurationError(name, f"names the peer {peer_id!r} twice")
        host, port = host_port(name, address.strip(), default_port=None)
        if (host, port) in peers.values():
            raise ConfigurationError(name, f"gives {host}:{port} to two peers")
        peers[peer_id] = (host, port)
    if not peers:
        raise ConfigurationError(name, "is empty: list the whole cluster as id=host:port,id=host:port,...")
    return peers


def parse_election_timeout(name: str, value: str) -> tuple[float, float]:
    """``min-max`` milliseconds: randomised in between so that candidates rarely split the vote."""
    match = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", value)
    if not match:
        raise ConfigurationError(name, f"must be a range of milliseconds like 1000-2000, got {value.strip()!r}")
    low, high = int(match[1]), int(match[2])
    if not 200 <= low < high <= 600_000:
        raise ConfigurationError(name, f"must be min-max with 200 <= min < max <= 600000 ms (a range, so that "
                                       f"candidates rarely split the vote), got {low}-{high}")
    return low / 1000, high / 1000


def raft_settings(get: Callable[..., object], instance_id: str, *, member: bool = True) -> RaftSettings:
    """``member=False``: for --status, which only asks the peers: RAFT_ID may then be anyone's."""
    peers: dict[str, tuple[str, int]] | None = get("RAFT_PEERS", parse_raft_peers)  # type: ignore[assignment]
    if peers is None:
        raise ConfigurationError("RAFT_PEERS", "is required with ELECTION_BACKEND=raft: the whole cluster as "
                                               "id=host:port,... (every instance lists the same ids)")
    node_id = get("RAFT_ID", _peer_id, default=None) or instance_id
    if node_id not in peers and not member:
        node_id = next(iter(peers))  # never started: --status only reads the peers' answers
    if node_id not in peers:
        raise ConfigurationError("RAFT_ID", f"{node_id!r} is not one of the ids in RAFT_PEERS "
                                            f"({', '.join(peers)}): set RAFT_ID to this instance's id")
    return RaftSettings(peers=peers, node_id=str(node_id), data_dir=get("RAFT_DATA_DIR", _data_dir),  # type: ignore[arg-type]
                        election_timeout=get("RAFT_ELECTION_TIMEOUT", parse_election_timeout))  # type: ignore[arg-type]


def _peer_id(name: str, value: str) -> str:
    if not _PEER_ID.match(value.strip()):
        raise ConfigurationError(name, f"must be 1-64 letters, digits or . _ -, got {value.strip()!r}")
    return value.strip()


def _data_dir(name: str, value: str) -> Path:
    path = Path(value.strip()).expanduser()
    if not value.strip():
        raise ConfigurationError(name, "is empty: a directory for this peer's term and vote")
    if path.exists() and not path.is_dir():
        raise ConfigurationError(name, f"{str(path)!r} exists and is not a directory")
    return path


