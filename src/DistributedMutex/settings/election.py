"""ELECTION_BACKEND and the settings of the backend it names: read, checked, built.

One reading for every program that takes its election from settings: ``distributed-mutex run``
(the environment and its flags) and the weather demo (its .env and constant.py too) read each
backend's settings with the functions here and build the backend with ``build_backend``, so that a
setting means the same, and is refused with the same one line, in both.

Each backend's module (and its third-party package) is imported only when it is built.
"""

from __future__ import annotations

import logging
from typing import TypeAlias

from DistributedMutex.backend import ElectionBackend
from DistributedMutex.errors import BackendError, StorageRejectedError
from DistributedMutex.settings.azure import AzureSettings, build_azure, read_azure
from DistributedMutex.settings.backends import (
    AZURE,
    RAFT,
    RAFT_NAMES,
    RAFT_TLS_SETTINGS,
    REDIS,
    REDIS_NAMES,
    ZOOKEEPER,
    ZOOKEEPER_NAMES,
    RaftSettings,
    RedisSettings,
    ZooKeeperSettings,
    parse_backend,
    read_raft,
    read_redis,
    read_zookeeper,
)
from DistributedMutex.settings.getter import Getter
from DistributedMutex.settings.postgres import (
    POSTGRES,
    POSTGRES_NAMES,
    POSTGRES_SETTINGS,
    PostgresSettings,
    read_postgres,
)
from DistributedMutex.timing import ElectionTiming

log = logging.getLogger(__name__)

BackendSettings: TypeAlias = AzureSettings | ZooKeeperSettings | RaftSettings | PostgresSettings | RedisSettings

# The settings only each backend reads (set for another one: ignored, and said so).
AZURE_SETTINGS = ("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_CONTAINER_SAS_URL", "AZURE_STORAGE_ACCOUNT_URL",
                  "AZURE_STORAGE_API_VERSION", "AZURE_STORAGE_ALLOW_HTTP", "CONTAINER_NAME", "BLOB_NAME",
                  "LEASE_DURATION", "RENEW_INTERVAL", "ACQUIRE_INTERVAL")
BACKEND_SETTINGS: dict[str, tuple[str, ...]] = {
    AZURE: AZURE_SETTINGS,
    ZOOKEEPER: ("ZOOKEEPER_HOSTS", "ZOOKEEPER_PATH", "ZOOKEEPER_SESSION_TIMEOUT"),
    RAFT: ("RAFT_PEERS", "RAFT_ID", "RAFT_DATA_DIR", "RAFT_ELECTION_TIMEOUT", *RAFT_TLS_SETTINGS),
    POSTGRES: POSTGRES_SETTINGS,
    REDIS: ("REDIS_URL", "REDIS_KEY_PREFIX", "REDIS_LEASE_DURATION"),
}

# The defaults of a program that runs one election of its own (``distributed-mutex run``): the
# names of the election differ from the demo's, so that a job never contends with the weather.
DEFAULTS: dict[str, str | None] = {
    "ELECTION_BACKEND": AZURE,
    "AZURE_STORAGE_CONNECTION_STRING": "UseDevelopmentStorage=true",
    "AZURE_STORAGE_API_VERSION": "2026-06-06",
    "AZURE_STORAGE_ALLOW_HTTP": "false",
    "AZURE_STORAGE_CONTAINER_SAS_URL": None,
    "AZURE_STORAGE_ACCOUNT_URL": None,
    "CONTAINER_NAME": "leader-election",
    "BLOB_NAME": "distributed-mutex-run",
    "LEASE_DURATION": "15",
    "RENEW_INTERVAL": "5",
    "ACQUIRE_INTERVAL": "2",
    "ZOOKEEPER_HOSTS": "127.0.0.1:2181",
    "ZOOKEEPER_PATH": "/distributed-mutex-run",
    "ZOOKEEPER_SESSION_TIMEOUT": "5",
    "RAFT_PEERS": None,
    "RAFT_ID": None,
    "RAFT_DATA_DIR": "raft-data",
    "RAFT_ELECTION_TIMEOUT": "1000-2000",
    "RAFT_TLS_CERT": None,
    "RAFT_TLS_KEY": None,
    "RAFT_TLS_CA": None,
    "POSTGRES_URL": "postgresql://postgres@127.0.0.1:5432/postgres",
    "POSTGRES_NOTIFY_URL": None,
    "POSTGRES_POOLED": "false",
    "POSTGRES_TABLE": "distributed_mutex_leases",
    "POSTGRES_ELECTION": "distributed-mutex-run",
    "POSTGRES_LEASE_DURATION": "5",
    "POSTGRES_CALL_TIMEOUT": "1",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
    "REDIS_KEY_PREFIX": "distributed-mutex:run",
    "REDIS_LEASE_DURATION": "5",
}


def read_election(get: Getter, instance_id: str, *, member: bool = True) -> BackendSettings:
    """ELECTION_BACKEND's settings. ``member=False``: only to ask who leads (RAFT_ID may be anyone's)."""
    backend = get("ELECTION_BACKEND", parse_backend)
    if backend == AZURE:
        return read_azure(get)
    if backend == ZOOKEEPER:
        return read_zookeeper(get)
    if backend == RAFT:
        return read_raft(get, instance_id, member=member)
    if backend == POSTGRES:
        return read_postgres(get)
    return read_redis(get)


def ignored_settings(get: Getter, chosen: BackendSettings) -> list[str]:
    """Settings given for another backend than the chosen one (to say that they are ignored)."""
    name = backend_name(chosen)
    return [setting for other, names in BACKEND_SETTINGS.items() if other != name for setting in names
            if get.is_set(setting) and setting not in BACKEND_SETTINGS[name]]


def backend_name(own: BackendSettings) -> str:
    if isinstance(own, AzureSettings):
        return AZURE
    if isinstance(own, ZooKeeperSettings):
        return ZOOKEEPER
    if isinstance(own, RaftSettings):
        return RAFT
    if isinstance(own, PostgresSettings):
        return POSTGRES
    return REDIS


def election_timing(own: BackendSettings) -> ElectionTiming | None:
    """The timing to pass to DistributedMutex: the blob lease's from its settings; None for the
    others, which run with their backend's own default_timing()."""
    return own.timing() if isinstance(own, AzureSettings) else None


def build_backend(own: BackendSettings, secrets: list[str] | None = None) -> ElectionBackend:
    """The backend the settings describe (its module imported now)."""
    if isinstance(own, AzureSettings):
        return build_azure(own, secrets)
    if isinstance(own, ZooKeeperSettings):
        from DistributedMutex.backends.zookeeper import ZooKeeperBackend

        return ZooKeeperBackend(own.hosts, own.path, session_timeout=own.session_timeout, names=ZOOKEEPER_NAMES)
    if isinstance(own, RaftSettings):
        from DistributedMutex.backends.raft import RaftBackend

        return RaftBackend(own.peers, own.node_id, own.data_dir, election_timeout=own.election_timeout,
                           names=RAFT_NAMES, tls_cert=own.tls_cert, tls_key=own.tls_key, tls_ca=own.tls_ca)
    if isinstance(own, PostgresSettings):
        from DistributedMutex.backends.postgres import PostgresLeaseBackend

        return PostgresLeaseBackend(own.url, own.election, table=own.table, lease_duration=own.lease_duration,
                                    call_timeout=own.call_timeout, notify_url=own.notify_url, pooled=own.pooled,
                                    names=POSTGRES_NAMES)
    from DistributedMutex.backends.redis import RedisLeaseBackend

    return RedisLeaseBackend(own.address.url, own.key_prefix, lease_duration=own.lease_duration, names=REDIS_NAMES)


def check_at_start(backend: ElectionBackend) -> None:
    """Ask the storage once before contending: a refusal only a person can fix (credentials,
    permissions, another program's keys) raises StorageRejectedError; a storage that does not
    answer is left to the election loop, which says so and keeps trying. Raft asks nobody here."""
    if backend.name not in (AZURE, POSTGRES, REDIS):
        return
    check = getattr(backend, "check_access", None)
    try:
        if check is not None:
            check()
        else:
            backend.read_leader()
    except StorageRejectedError:
        raise
    except BackendError as exc:
        log.warning("%s: the election waits for the storage", exc)


def secrets_of(own: BackendSettings) -> list[str]:
    """Values never to print (passwords in URLs, account keys, SAS signatures)."""
    from DistributedMutex.settings.azure_storage import connection_string_secrets, sas_url_secrets

    if isinstance(own, AzureSettings):
        values = [own.connection_string, *connection_string_secrets(own.connection_string)]
        if own.container_sas_url:
            values += sas_url_secrets(own.container_sas_url)
    elif isinstance(own, (PostgresSettings, RedisSettings)):
        values = own.secrets()
    else:
        values = []
    return [value for value in values if len(value) >= 4]
