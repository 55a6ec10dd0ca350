"""ELECTION_BACKEND chooses a row of CHOICES: the settings only that backend reads, how they are read,
the timing the demo passes (None: the backend's own), how the backend is built, what is checked
once at start, and how the start-up line names it. Adding a backend is adding a row.

Each backend's module (and its third-party package) is imported only when it is built.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from distributed_mutex_demo.backend_settings import (
    AZURE,
    RAFT,
    RAFT_TLS_SETTINGS,
    REDIS,
    TIMING_NAMES,
    ZOOKEEPER,
    RaftSettings,
    RedisSettings,
    ZooKeeperSettings,
    read_raft,
    read_redis,
    read_zookeeper,
)
from distributed_mutex_demo.postgres_settings import (
    POSTGRES,
    POSTGRES_SETTINGS,
    PostgresSettings,
    read_postgres,
)
from distributed_mutex_demo.redaction import all_secrets
from distributed_mutex_demo.settings_sources import Getter
from DistributedMutex.backend import ElectionBackend
from DistributedMutex.backends.azure.arguments import blob_timing
from DistributedMutex.errors import BackendError, StorageRejectedError
from DistributedMutex.settings.azure import AzureSettings
from DistributedMutex.settings.election import build_backend as build_election_backend
from DistributedMutex.timing import ElectionTiming, check_timing_values

if TYPE_CHECKING:
    from distributed_mutex_demo.config import Settings
    from DistributedMutex.backends.azure.lease import AzureBlobLeaseBackend

log = logging.getLogger("distributed_mutex_demo")


def _nothing(backend: ElectionBackend) -> None:
    """Nothing to check before contending."""


@dataclass(frozen=True)
class BackendChoice:
    settings: tuple[str, ...]  # the settings only this backend reads (set for another one: ignored)
    # Its own settings, from the sources (the blob lease's are fields of Settings itself: None).
    read: Callable[[Getter, str, bool], ZooKeeperSettings | RaftSettings | PostgresSettings | RedisSettings | None]
    timing: Callable[[Settings], ElectionTiming | None]  # None: the backend's default_timing()
    build: Callable[[Settings], ElectionBackend]
    describe: Callable[[Settings], str]  # where the election happens, for the start-up line
    check: Callable[[ElectionBackend], None] = _nothing  # once at start: refusals only a person can fix


# -- the blob lease ---------------------------------------------------------------------------------

def azure_timing(settings: Settings) -> ElectionTiming:
    """LEASE_DURATION, RENEW_INTERVAL and ACQUIRE_INTERVAL, with the blob lease's own safety margin;
    a broken invariant is said in the settings' names."""
    margin = blob_timing(settings.lease_duration).safety_margin
    values = (settings.lease_duration, settings.renew_interval, settings.acquire_interval, margin)
    check_timing_values(*values, names=TIMING_NAMES)
    return ElectionTiming(*values)


def build_azure(settings: Settings) -> AzureBlobLeaseBackend:
    """The library's builder (DistributedMutex.settings.azure), from the demo's fields."""
    from DistributedMutex.settings.azure import build_azure as build

    return build(azure_settings(settings), all_secrets(settings))


def azure_settings(settings: Settings) -> AzureSettings:
    return AzureSettings(connection_string=settings.connection_string, container_name=settings.container_name,
                         blob_name=settings.blob_name, lease_duration=settings.lease_duration,
                         renew_interval=settings.renew_interval, acquire_interval=settings.acquire_interval,
                         api_version=settings.api_version, container_sas_url=settings.container_sas_url,
                         account_url=settings.account_url)


def check_azure(backend: ElectionBackend) -> None:
    """Read and write the lease blob once at start: refused credentials or a missing permission
    raise StorageRejectedError; anything else is left to the election loop, which retries."""
    from DistributedMutex.backends.azure.lease import AzureBlobLeaseBackend

    if not isinstance(backend, AzureBlobLeaseBackend):
        return
    try:
        backend.check_access()
    except StorageRejectedError:
        raise
    except BackendError:
        pass  # unreachable or gone: the election loop says so and keeps trying


def describe_azure(settings: Settings) -> str:
    timing = settings.timing() or blob_timing(settings.lease_duration)
    return (f"lease on {settings.container_name}/{settings.blob_name} (lease {timing.lease_duration:g} s, "
            f"renew {timing.renew_interval:g} s, acquire {timing.acquire_interval:g} s)")


# -- ZooKeeper ------------------------------------------------------------------------------------------

def _zookeeper(settings: Settings) -> ZooKeeperSettings:
    assert settings.zookeeper is not None, "read with ELECTION_BACKEND=zookeeper"
    return settings.zookeeper


def build_zookeeper(settings: Settings) -> ElectionBackend:
    return build_election_backend(_zookeeper(settings))


def describe_zookeeper(settings: Settings) -> str:
    zk = _zookeeper(settings)
    return f"ZooKeeper {zk.hosts}, path {zk.path} (session timeout {zk.session_timeout:g} s)"


# -- Raft ------------------------------------------------------------------------------------------------

def _raft(settings: Settings) -> RaftSettings:
    assert settings.raft is not None, "read with ELECTION_BACKEND=raft"
    return settings.raft


def build_raft(settings: Settings) -> ElectionBackend:
    return build_election_backend(_raft(settings))


def describe_raft(settings: Settings) -> str:
    raft = _raft(settings)
    low, high = raft.election_timeout
    # Whether anyone who reaches the port can vote or lead: the first thing to know about a Raft peer.
    transport = (f"peers authenticated by mutual TLS (CA {raft.tls_ca})" if raft.authenticated
                 else "plain TCP on loopback, peers not authenticated")
    return (f"Raft peer {raft.node_id} of {len(raft.peers)} ({', '.join(raft.peers)}), {transport}, election "
            f"timeout {low * 1000:g}-{high * 1000:g} ms, state in {raft.data_dir}")


# -- PostgreSQL ------------------------------------------------------------------------------------------

def _postgres(settings: Settings) -> PostgresSettings:
    assert settings.postgres is not None, "read with ELECTION_BACKEND=postgres"
    return settings.postgres


def build_postgres(settings: Settings) -> ElectionBackend:
    return build_election_backend(_postgres(settings))


def check_postgres(backend: ElectionBackend) -> None:
    """Read the lease row once at start (creating the table): a refusal (login, database,
    privileges) stops the program; a server that does not answer is said once, clearly, and the
    election loop keeps trying."""
    try:
        backend.read_leader()
    except StorageRejectedError:
        raise
    except BackendError as exc:
        log.warning("%s: is PostgreSQL running? Start it, or set POSTGRES_URL to one that is (waiting for it)",
                    exc)


def describe_postgres(settings: Settings) -> str:
    from DistributedMutex.backends.postgres.arguments import describe_url

    pg = _postgres(settings)
    timing = pg.timing()
    pooled = (" through a transaction pooler" + ("" if pg.notify_url else ", polling")) if pg.pooled else ""
    return (f"PostgreSQL {describe_url(pg.url)}{pooled}, table {pg.table}, election {pg.election!r} (lease "
            f"{timing.lease_duration:g} s by the server's clock, renew {timing.renew_interval:g} s, acquire "
            f"{timing.acquire_interval:g} s)")


# -- Redis ------------------------------------------------------------------------------------------------

def _redis(settings: Settings) -> RedisSettings:
    assert settings.redis is not None, "read with ELECTION_BACKEND=redis"
    return settings.redis


def build_redis(settings: Settings) -> ElectionBackend:
    return build_election_backend(_redis(settings))


def check_redis(backend: ElectionBackend) -> None:
    """Read the election once at start: refused credentials or permissions, a database the server
    lacks, or keys of another program raise StorageRejectedError; an unreachable server is left to
    the election loop, which says so and keeps trying."""
    try:
        backend.read_leader()
    except StorageRejectedError:
        raise
    except BackendError:
        pass


def describe_redis(settings: Settings) -> str:
    own = _redis(settings)
    timing = own.timing()
    return (f"Redis {own.address.masked}, keys {{{own.key_prefix}}}:* (lease {timing.lease_duration:g} s, renew "
            f"{timing.renew_interval:g} s, acquire {timing.acquire_interval:g} s)")


CHOICES: dict[str, BackendChoice] = {
    AZURE: BackendChoice(
        settings=("AZURE_STORAGE_CONNECTION_STRING", "AZURE_STORAGE_CONTAINER_SAS_URL", "AZURE_STORAGE_ACCOUNT_URL",
                  "CONTAINER_NAME", "BLOB_NAME", "LEASE_DURATION", "RENEW_INTERVAL", "ACQUIRE_INTERVAL"),
        read=lambda get, instance_id, member: None, timing=azure_timing, build=build_azure,
        describe=describe_azure, check=check_azure),
    ZOOKEEPER: BackendChoice(
        settings=("ZOOKEEPER_HOSTS", "ZOOKEEPER_PATH", "ZOOKEEPER_SESSION_TIMEOUT"),
        read=lambda get, instance_id, member: read_zookeeper(get), timing=lambda settings: None,
        build=build_zookeeper, describe=describe_zookeeper),
    RAFT: BackendChoice(
        settings=("RAFT_PEERS", "RAFT_ID", "RAFT_DATA_DIR", "RAFT_ELECTION_TIMEOUT", *RAFT_TLS_SETTINGS),
        read=lambda get, instance_id, member: read_raft(get, instance_id, member=member),
        timing=lambda settings: None, build=build_raft, describe=describe_raft),
    POSTGRES: BackendChoice(
        settings=POSTGRES_SETTINGS, read=lambda get, instance_id, member: read_postgres(get),
        timing=lambda settings: None, build=build_postgres, describe=describe_postgres, check=check_postgres),
    REDIS: BackendChoice(
        settings=("REDIS_URL", "REDIS_KEY_PREFIX", "REDIS_LEASE_DURATION"),
        read=lambda get, instance_id, member: read_redis(get), timing=lambda settings: None,
        build=build_redis, describe=describe_redis, check=check_redis),
}


def build_backend(settings: Settings) -> ElectionBackend:
    """The backend ELECTION_BACKEND names."""
    return CHOICES[settings.election_backend].build(settings)
