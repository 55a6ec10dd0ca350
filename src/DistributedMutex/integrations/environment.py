"""The election of a scheduler integration from the environment: the settings `distributed-mutex run`
and the demo read (ELECTION_BACKEND, ZOOKEEPER_HOSTS, RAFT_PEERS/RAFT_ID/RAFT_DATA_DIR, POSTGRES_*,
REDIS_*, the Azure ones; DistributedMutex.settings), read the same way and refused with the same
one line, with election names of the integration's own so that it never contends with a wrapped
command or the demo.
"""

from __future__ import annotations

import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from DistributedMutex.backend import ElectionBackend, Identity
from DistributedMutex.timing import ElectionTiming

ELECTION_BACKEND = "ELECTION_BACKEND"


@dataclass(frozen=True)
class EnvironmentElection:
    backend: ElectionBackend
    timing: ElectionTiming | None
    identity: Identity


def election_from_environment(environ: Mapping[str, str], name: str) -> EnvironmentElection:
    """The backend ELECTION_BACKEND names, with its settings; ``name`` names the election where a
    setting is not given (the blob, the znode path, the PostgreSQL election, the Redis key prefix).
    INSTANCE_ID names this instance (default ``<hostname>-<pid>``; a Raft peer's default RAFT_ID)."""
    from DistributedMutex.settings.election import DEFAULTS, build_backend, election_timing, read_election, secrets_of
    from DistributedMutex.settings.getter import Getter

    defaults = {**DEFAULTS, "BLOB_NAME": name, "ZOOKEEPER_PATH": f"/{name}", "POSTGRES_ELECTION": name,
                "REDIS_KEY_PREFIX": name.replace("-", ":", 1), "INSTANCE_ID": _default_instance_id()}
    get = Getter({key: value for key, value in environ.items() if key in defaults}, defaults)
    instance_id = get("INSTANCE_ID", _instance_id)
    own = read_election(get, instance_id)
    return EnvironmentElection(build_backend(own, secrets_of(own)), election_timing(own), Identity(instance_id))


def _instance_id(name: str, value: str) -> str:
    from DistributedMutex.errors import ConfigurationError

    text = value.strip()
    if not text or not text.isprintable() or len(text) > 256:
        raise ConfigurationError(name, f"must be 1-256 printable characters, got {text!r}")
    return text


def _default_instance_id() -> str:
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:50] or "host"
    return f"{host}-{os.getpid()}"
