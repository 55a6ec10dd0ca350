"""The settings of the three election backends, and the library arguments they become.

    ELECTION_BACKEND=azure      a lease on one blob (AZURE_STORAGE_*, CONTAINER_NAME, BLOB_NAME,
                                LEASE_DURATION, RENEW_INTERVAL, ACQUIRE_INTERVAL)
    ELECTION_BACKEND=zookeeper  the sequential-ephemeral-znode recipe (ZOOKEEPER_HOSTS,
                                ZOOKEEPER_PATH, ZOOKEEPER_SESSION_TIMEOUT)
    ELECTION_BACKEND=raft       Raft's election among the instances themselves (RAFT_PEERS,
                                RAFT_ID, RAFT_DATA_DIR, RAFT_ELECTION_TIMEOUT; RAFT_TLS_CERT,
                                RAFT_TLS_KEY, RAFT_TLS_CA for mutual TLS between the peers)
    ELECTION_BACKEND=postgres   a lease on a row of a PostgreSQL table (POSTGRES_*: postgres_settings.py)
    ELECTION_BACKEND=redis      a lease on one key of a Redis primary (REDIS_URL,
                                REDIS_KEY_PREFIX, REDIS_LEASE_DURATION)

Each backend owns the loop's timing (its default_timing(): the blob lease from its lease duration,
a ZooKeeper session from its timeout, Raft from its election timeout, Redis from its lease); the demo passes a timing of
its own only for the blob lease, whose RENEW_INTERVAL and ACQUIRE_INTERVAL are settings.

The ``*_NAMES`` tables say which setting each library argument comes from: the backends are given
them (their ``names`` argument), so that their messages name what the user set.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from DistributedMutex.addresses import host_port
from DistributedMutex.backends.raft.arguments import PEER_ID, check_data_dir, raft_timing
from DistributedMutex.backends.raft.tls import check_tls_needed, load_tls
from DistributedMutex.backends.redis.arguments import (
    RedisAddress,
    check_key_prefix,
    parse_lease_duration,
    parse_redis_url,
    redis_timing,
)
from DistributedMutex.backends.zookeeper.arguments import (
    parse_session_timeout,
    parse_znode_path,
    parse_zookeeper_hosts,
    zookeeper_timing,
)
from DistributedMutex.errors import ConfigurationError
from DistributedMutex.settings.getter import Getter
from DistributedMutex.settings.postgres import POSTGRES
from DistributedMutex.timing import ElectionTiming

AZURE, ZOOKEEPER, RAFT = "azure", "zookeeper", "raft"
REDIS = "redis"
BACKENDS = (AZURE, ZOOKEEPER, RAFT, POSTGRES, REDIS)
# library argument -> the setting it comes from
AZURE_NAMES = {"connection_string": "AZURE_STORAGE_CONNECTION_STRING",
               "container_sas_url": "AZURE_STORAGE_CONTAINER_SAS_URL", "account_url": "AZURE_STORAGE_ACCOUNT_URL",
               "container_name": "CONTAINER_NAME", "blob_name": "BLOB_NAME", "lease_duration": "LEASE_DURATION",
               "api_version": "AZURE_STORAGE_API_VERSION", "credential": "DefaultAzureCredential"}
ZOOKEEPER_NAMES = {"hosts": "ZOOKEEPER_HOSTS", "path": "ZOOKEEPER_PATH", "session_timeout": "ZOOKEEPER_SESSION_TIMEOUT"}
RAFT_NAMES = {"peers": "RAFT_PEERS", "node_id": "RAFT_ID", "data_dir": "RAFT_DATA_DIR",
              "election_timeout": "RAFT_ELECTION_TIMEOUT", "tls_cert": "RAFT_TLS_CERT", "tls_key": "RAFT_TLS_KEY",
              "tls_ca": "RAFT_TLS_CA"}
RAFT_TLS_SETTINGS = ("RAFT_TLS_CERT", "RAFT_TLS_KEY", "RAFT_TLS_CA")
REDIS_NAMES = {"url": "REDIS_URL", "key_prefix": "REDIS_KEY_PREFIX", "lease_duration": "REDIS_LEASE_DURATION"}
# The blob lease's safety margin is no setting: the messages call it by what it is.
TIMING_NAMES = {"lease_duration": "LEASE_DURATION", "renew_interval": "RENEW_INTERVAL",
                "acquire_interval": "ACQUIRE_INTERVAL", "safety_margin": "safety margin"}


@dataclass(frozen=True)
class ZooKeeperSettings:
    hosts: str  # host:port,host:port (as kazoo takes it)
    path: str
    session_timeout: float  # seconds

    def __post_init__(self) -> None:
        # Here too, not only in config.py: callers build these settings themselves (README).
        parse_session_timeout("ZOOKEEPER_SESSION_TIMEOUT", self.session_timeout)

    def timing(self) -> ElectionTiming:
        """What ZooKeeperBackend.default_timing() says for this session timeout."""
        return zookeeper_timing(self.session_timeout)


@dataclass(frozen=True)
class RaftSettings:
    peers: dict[str, tuple[str, int]]  # id -> (host, port), the whole cluster
    node_id: str
    data_dir: Path
    election_timeout: tuple[float, float]  # seconds, (min, max)
    # PEM files for mutual TLS between the peers, all three or none (None: plain TCP, loopback only).
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None

    @property
    def authenticated(self) -> bool:
        return self.tls_cert is not None

    def timing(self) -> ElectionTiming:
        """What RaftBackend.default_timing() says for this election timeout."""
        return raft_timing(self.election_timeout)


@dataclass(frozen=True)
class RedisSettings:
    address: RedisAddress  # REDIS_URL, checked; ``masked`` is what may be shown
    key_prefix: str
    lease_duration: float  # seconds

    def timing(self) -> ElectionTiming:
        """What RedisLeaseBackend.default_timing() says for this lease."""
        return redis_timing(self.lease_duration)

    def secrets(self) -> list[str]:
        """The password in REDIS_URL, for the filter that keeps it out of every log line."""
        return [self.address.password] if self.address.password else []


def read_redis(get: Getter) -> RedisSettings:
    return RedisSettings(address=get("REDIS_URL", parse_redis_url),
                         key_prefix=get("REDIS_KEY_PREFIX", lambda name, value: check_key_prefix(name, value.strip())),
                         lease_duration=get("REDIS_LEASE_DURATION", parse_lease_duration))


def read_zookeeper(get: Getter) -> ZooKeeperSettings:
    return ZooKeeperSettings(
        hosts=get("ZOOKEEPER_HOSTS", lambda name, value: parse_zookeeper_hosts(name, value,
                                                                              path_name="ZOOKEEPER_PATH")),
        path=get("ZOOKEEPER_PATH", parse_znode_path),
        session_timeout=get("ZOOKEEPER_SESSION_TIMEOUT", parse_session_timeout))


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
        if not sep or not PEER_ID.match(peer_id):
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


def read_raft(get: Getter, instance_id: str, *, member: bool = True) -> RaftSettings:
    """``member=False``: for --status, which only asks the peers: RAFT_ID may then be anyone's,
    unless RAFT_TLS_* are set: --status then presents that certificate, which names one peer id.

    The TLS files are checked here with the library's own checks (the messages RaftBackend would
    give, in the settings' names), so that a mistake stops the program before anything else."""
    peers: dict[str, tuple[str, int]] | None = get("RAFT_PEERS", parse_raft_peers)
    if peers is None:
        raise ConfigurationError("RAFT_PEERS", "is required with ELECTION_BACKEND=raft: the whole cluster as "
                                               "id=host:port,... (every instance lists the same ids)")
    files: list[Path | None] = [get(name, _pem_path, default=None) for name in RAFT_TLS_SETTINGS]
    cert, key, ca = files
    missing = [name for name, path in zip(RAFT_TLS_SETTINGS, files, strict=True) if path is None]
    if 0 < len(missing) < len(files):
        # Said here rather than by the library, which names all the missing ones at once: one setting per error.
        given = [name for name in RAFT_TLS_SETTINGS if name not in missing]
        verb = "is" if len(given) == 1 else "are"
        raise ConfigurationError(missing[0], f"is not set, but {' and '.join(given)} {verb}: mutual TLS needs "
                                             f"RAFT_TLS_CERT, RAFT_TLS_KEY and RAFT_TLS_CA, all three or none")
    node_id = get("RAFT_ID", _peer_id, default=None) or instance_id
    if node_id not in peers and not member:
        if not missing:
            # The peers accept a status query only from a certificate naming one of them.
            raise ConfigurationError("RAFT_ID", f"{node_id!r} is not one of the ids in RAFT_PEERS ({', '.join(peers)})"
                                                f": with RAFT_TLS_CERT, --status presents that certificate, so set "
                                                f"RAFT_ID to the peer id it names")
        node_id = next(iter(peers))  # never started: --status only reads the peers' answers
    if node_id not in peers:
        raise ConfigurationError("RAFT_ID", f"{node_id!r} is not one of the ids in RAFT_PEERS "
                                            f"({', '.join(peers)}): set RAFT_ID to this instance's id")
    if load_tls(node_id, cert, key, ca, _raft_name) is None:
        check_tls_needed(peers, _raft_name)
    return RaftSettings(peers=peers, node_id=str(node_id), data_dir=get("RAFT_DATA_DIR", _data_dir),
                        election_timeout=get("RAFT_ELECTION_TIMEOUT", parse_election_timeout),
                        tls_cert=cert, tls_key=key, tls_ca=ca)


def _raft_name(argument: str) -> str:
    return RAFT_NAMES.get(argument, argument)


def _pem_path(name: str, value: str) -> Path:
    if not value.strip():
        raise ConfigurationError(name, "is empty: the path of a PEM file (unset all three RAFT_TLS_* for plain "
                                       "TCP on loopback)")
    return Path(value.strip()).expanduser()


def _peer_id(name: str, value: str) -> str:
    if not PEER_ID.match(value.strip()):
        raise ConfigurationError(name, f"must be 1-64 letters, digits or . _ -, got {value.strip()!r}")
    return value.strip()


def _data_dir(name: str, value: str) -> Path:
    if not value.strip():
        raise ConfigurationError(name, "is empty: a directory for this peer's term and vote")
    return check_data_dir(name, value.strip())
