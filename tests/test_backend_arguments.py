"""Each backend's arguments, checked when it is built: one line in the library's terms (the
argument's name and the rule), or in the caller's own terms when it passes ``names`` (what the
demo does with its settings). No service is needed: nothing connects before the first call.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from DistributedMutex.backends.azure.lease import AzureBlobLeaseBackend
from DistributedMutex.backends.postgres import PostgresLeaseBackend
from DistributedMutex.backends.raft import RaftBackend
from DistributedMutex.backends.raft.arguments import raft_timing
from DistributedMutex.backends.redis import RedisLeaseBackend
from DistributedMutex.backends.zookeeper.backend import ZooKeeperBackend
from DistributedMutex.errors import ConfigurationError

WRONG_KEY = "d3Jvbmcta2V5LWZvci10ZXN0cy0xMjM0NTY3OA=="
STALE = "with a 1 s minimum election timeout (longer, and the leader's lease goes stale between heartbeats)"


def backend(conn: str, container: str, **kwargs: Any) -> AzureBlobLeaseBackend:
    return AzureBlobLeaseBackend(conn, container, "weather-leader", **kwargs)


# -- RaftBackend ------------------------------------------------------------------------------------

def test_raft_defaults_are_the_documented_ones(tmp_path: Path) -> None:
    """election_timeout (1.0, 2.0) s; data_dir a str or a Path; the timing follows from the minimum
    and the heartbeat interval (a tenth of it): renewed as seldom as the lease allows."""
    backend = RaftBackend({"a": ("127.0.0.1", 7001), "b": "127.0.0.1:7002"}, "a", str(tmp_path / "state"))
    timing = backend.default_timing()
    assert (timing.lease_duration, timing.renew_interval, timing.acquire_interval, timing.safety_margin) == (
        1.0, 0.3, 0.5, 0.25)
    assert backend.lease_basis == "election_timeout minimum 1 s"


@pytest.mark.parametrize(("arguments", "message"), [
    ({"peers": {}}, "peers: must list the whole cluster as {id: (host, port), ...}, got {}"),
    ({"peers": [("127.0.0.1", 7001)]}, "peers: must list the whole cluster as {id: (host, port), ...}, got list"),
    ({"peers": {"a b": ("127.0.0.1", 7001)}, "node_id": "a b"},
     "peers: 'a b' is not a peer id (1-64 letters, digits or . _ -, starting with a letter or digit)"),
    ({"peers": {"a": ("127.0.0.1", 70001)}}, "peers['a']: '127.0.0.1:70001': the port must be a number from 1 to 65535"),
    ({"peers": {"a": ("127.0.0.1", "7001")}}, "peers: the address of 'a' must be (host, port), got ('127.0.0.1', '7001')"),
    ({"peers": {"a": "127.0.0.1"}}, "peers['a']: '127.0.0.1' has no port: write host:port"),
    ({"peers": {"a": ("127.0.0.1", 7001), "b": ("127.0.0.1", 7001)}}, "peers: gives 127.0.0.1:7001 to two peers"),
    ({"node_id": "d"}, "node_id: 'd' is not one of the ids in peers (a, b, c)"),
    ({"election_timeout": (2.0, 1.0)}, "election_timeout: must be (min, max) seconds with 0.2 <= min < max <= 600 "
                                       "(a range, so that candidates rarely split the vote), got (2, 1)"),
    ({"election_timeout": 1.5}, "election_timeout: must be (min, max) seconds with 0.2 <= min < max <= 600, got 1.5"),
    ({"election_timeout": (0.1, 0.2)}, "election_timeout: must be (min, max) seconds with 0.2 <= min < max <= 600 "
                                       "(a range, so that candidates rarely split the vote), got (0.1, 0.2)"),
    ({"data_dir": "/etc/hostname"}, "data_dir: '/etc/hostname' exists and is not a directory"),
    ({"data_dir": None}, "data_dir: must be a directory path (str or Path) for this peer's term and vote, got None"),
    # Beyond 0.35 x the minimum election timeout the lease goes stale between heartbeat rounds
    # (arguments.max_heartbeat_interval): 0.9 s stepped down at the deadline about every second.
    ({"heartbeat_interval": 0.9}, f"heartbeat_interval: must be above 0 and at most 0.35 s {STALE}, got 0.9"),
    ({"heartbeat_interval": 0.36}, f"heartbeat_interval: must be above 0 and at most 0.35 s {STALE}, got 0.36"),
    ({"heartbeat_interval": 1.0}, f"heartbeat_interval: must be above 0 and at most 0.35 s {STALE}, got 1"),
    ({"heartbeat_interval": 0}, f"heartbeat_interval: must be above 0 and at most 0.35 s {STALE}, got 0"),
    ({"heartbeat_interval": -0.1}, f"heartbeat_interval: must be above 0 and at most 0.35 s {STALE}, got -0.1"),
    ({"heartbeat_interval": math.nan}, f"heartbeat_interval: must be above 0 and at most 0.35 s {STALE}, got nan"),
    ({"heartbeat_interval": "0.1"}, "heartbeat_interval: must be a number of seconds, got '0.1'"),
    ({"heartbeat_interval": True}, "heartbeat_interval: must be a number of seconds, got True"),
    ({"election_timeout": (4.0, 8.0), "heartbeat_interval": 1.5},
     "heartbeat_interval: must be above 0 and at most 1.4 s with a 4 s minimum election timeout (longer, and the "
     "leader's lease goes stale between heartbeats), got 1.5"),
])
def test_raft_bad_arguments_are_one_line_in_the_library_s_terms(tmp_path: Path, arguments: dict[str, Any],
                                                           message: str) -> None:
    given = {"peers": {"a": ("127.0.0.1", 7001), "b": ("127.0.0.1", 7002), "c": ("127.0.0.1", 7003)},
             "node_id": "a", "data_dir": tmp_path, **arguments}
    with pytest.raises(ConfigurationError) as raised:
        RaftBackend(**given)
    assert str(raised.value) == message
    assert "RAFT_" not in str(raised.value)


@pytest.mark.parametrize(("election_timeout", "heartbeat_interval"), [
    ((1.0, 2.0), 0.35), ((1.0, 2.0), 0.001), ((4.0, 8.0), 1.4),
    # The default, a tenth of the minimum, always fits: at the smallest election timeout exactly.
    ((0.2, 0.4), 0.02), ((0.3, 0.6), 0.03),
])
def test_raft_takes_a_heartbeat_interval_up_to_its_limit(tmp_path: Path, election_timeout: tuple[float, float],
                                                         heartbeat_interval: float) -> None:
    backend = RaftBackend({"a": ("127.0.0.1", 7001)}, "a", tmp_path, election_timeout,
                          heartbeat_interval=heartbeat_interval)
    timing = backend.default_timing()
    assert timing == raft_timing(election_timeout, heartbeat_interval)
    # The rule it is checked against: the round a renewal reads is at most one interval old, and
    # two renewals must still fit before the deadline.
    assert heartbeat_interval + 2 * timing.renew_interval <= timing.acting_window + 1e-9
    # Never renewed more often than every lease / 5.
    assert timing.renew_interval >= election_timeout[0] / 5 - 1e-9


def test_raft_takes_a_program_s_own_setting_names(tmp_path: Path) -> None:
    names = {"peers": "RAFT_PEERS", "node_id": "RAFT_ID", "data_dir": "RAFT_DATA_DIR"}
    with pytest.raises(ConfigurationError) as raised:
        RaftBackend({"a": ("127.0.0.1", 7001)}, "b", tmp_path, names=names)
    assert str(raised.value) == "RAFT_ID: 'b' is not one of the ids in RAFT_PEERS (a)"


# -- ZooKeeperBackend -------------------------------------------------------------------------------

@pytest.mark.parametrize(("options", "message"), [
    ({"hosts": "zk1:21810000"}, "hosts: 'zk1:21810000': the port must be a number from 1 to 65535"),
    ({"hosts": ""}, "hosts: '' is not host:port"),
    ({"hosts": "zk1:2181/apps"}, "hosts: 'zk1:2181/apps' has a path: give the znode path in the path argument instead"),
    ({"hosts": 2181}, "hosts: must be a string of host:port pairs like '127.0.0.1:2181', got 2181"),
    ({"path": "election"}, "path: must be an absolute znode path like /election (letters, digits, . _ - between "
                           "slashes, no trailing slash), got 'election'"),
    ({"path": "/zookeeper/election"}, "path: '/zookeeper/election' is reserved by ZooKeeper: choose another path"),
    ({"session_timeout": 0.5}, "session_timeout: must be from 2 to 40 seconds"),
    ({"session_timeout": 1.9}, "session_timeout: must be from 2 to 40 seconds"),
    ({"session_timeout": 40.5}, "session_timeout: must be from 2 to 40 seconds"),
    ({"session_timeout": float("nan")}, "session_timeout: must be from 2 to 40 seconds"),
    ({"session_timeout": "five"}, "session_timeout: must be a number of seconds, got 'five'"),
    ({"call_timeout": 0}, "call_timeout: must be a number of seconds above 0 and at most the 5 s session timeout"),
])
def test_zookeeper_bad_arguments_are_one_line_in_the_library_s_terms(options: dict, message: str) -> None:
    arguments = {"hosts": "127.0.0.1:2181", "path": "/election", "session_timeout": 5.0, **options}
    with pytest.raises(ConfigurationError) as raised:
        ZooKeeperBackend(arguments.pop("hosts"), arguments.pop("path"), **arguments)
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)
    assert "ZOOKEEPER" not in str(raised.value)


def test_zookeeper_takes_a_program_s_own_setting_names() -> None:
    """The demo passes its settings' names: its users read ZOOKEEPER_PATH, not path."""
    names = {"hosts": "ZOOKEEPER_HOSTS", "path": "ZOOKEEPER_PATH", "session_timeout": "ZOOKEEPER_SESSION_TIMEOUT"}
    with pytest.raises(ConfigurationError) as raised:
        ZooKeeperBackend("zk1:2181/apps", names=names)
    assert str(raised.value) == "ZOOKEEPER_HOSTS: 'zk1:2181/apps' has a path: give the znode path in ZOOKEEPER_PATH instead"
    with pytest.raises(ConfigurationError, match=r"^ZOOKEEPER_SESSION_TIMEOUT: must be from 2 to 40"):
        ZooKeeperBackend("127.0.0.1:2181", session_timeout=100, names=names)


# -- RedisLeaseBackend ------------------------------------------------------------------------------

def test_redis_defaults_are_the_documented_ones() -> None:
    backend = RedisLeaseBackend("redis://127.0.0.1:6379/0")
    timing = backend.default_timing()
    assert (timing.lease_duration, timing.renew_interval, timing.acquire_interval, timing.safety_margin) == (
        5.0, 1.0, 1.0, 1.0)
    assert backend.keys == ("{distributed-mutex:election}:lease", "{distributed-mutex:election}:term",
                            "{distributed-mutex:election}:leader")
    assert backend.lease_basis == "lease_duration 5 s"
    backend.close()


@pytest.mark.parametrize(("options", "message"), [
    ({"url": "http://cache:6379"}, "url: 'http://cache:6379' must start with redis://, rediss:// (TLS) or unix://"),
    ({"url": "redis://:hunter2-Secret@cache:70000/0"}, "url: 'cache:70000': the port must be a number from 1 to 65535"),
    ({"url": "redis://:hunter2-Secret@cache/one"}, "url: 'redis://:***@cache/one': the database must be a number"),
    ({"url": "redis://:hunter2-Secret@cache/0?retry_on_timeout=yes&password=hunter2-Secret"},
     "url: 'redis://:***@cache/0?retry_on_timeout=yes&password=***' sets password, retry_on_timeout in its query"),
    ({"url": "unix://"}, "url: 'unix://' names no socket: write unix:///path/to/redis.sock"),
    ({"url": ""}, "url: must be a URL like redis://127.0.0.1:6379/0, got ''"),
    ({"url": 6379}, "url: must be a URL like redis://127.0.0.1:6379/0, got 6379"),
    ({"key_prefix": "a b"}, "key_prefix: must be 1-200 letters, digits or . _ : / @ - (the election's keys start "
                            "with it), got 'a b'"),
    ({"key_prefix": "app:*"}, "key_prefix: must be 1-200 letters"),
    ({"key_prefix": ""}, "key_prefix: must be 1-200 letters"),
    ({"lease_duration": 1.5}, "lease_duration: must be from 2 to 60 seconds, got 1.5"),
    ({"lease_duration": 61}, "lease_duration: must be from 2 to 60 seconds, got 61"),
    ({"lease_duration": float("nan")}, "lease_duration: must be from 2 to 60 seconds, got nan"),
    ({"lease_duration": True}, "lease_duration: must be a number of seconds, got True"),
    ({"call_timeout": 1.0}, "call_timeout: must be above 0 and below the 1 s renew interval of a 5 s lease, got 1"),
    ({"call_timeout": 0}, "call_timeout: must be above 0 and below the 1 s renew interval of a 5 s lease, got 0"),
    ({"call_timeout": "fast"}, "call_timeout: must be a number of seconds, got 'fast'"),
])
def test_redis_bad_arguments_are_one_line_in_the_library_s_terms_without_the_password(options: dict,
                                                                                       message: str) -> None:
    arguments: dict[str, Any] = {"url": "redis://127.0.0.1:6379/0", **options}
    with pytest.raises(ConfigurationError) as raised:
        RedisLeaseBackend(arguments.pop("url"), **arguments)
    assert str(raised.value).startswith(message), str(raised.value)
    assert "\n" not in str(raised.value) and "hunter2" not in str(raised.value)


def test_redis_takes_a_program_s_own_setting_names() -> None:
    names = {"url": "REDIS_URL", "key_prefix": "REDIS_KEY_PREFIX", "lease_duration": "REDIS_LEASE_DURATION"}
    with pytest.raises(ConfigurationError, match=r"^REDIS_URL: 'ftp://x' must start with redis://"):
        RedisLeaseBackend("ftp://x", names=names)
    with pytest.raises(ConfigurationError, match=r"^REDIS_KEY_PREFIX: must be 1-200"):
        RedisLeaseBackend("redis://x", "a b", names=names)
    with pytest.raises(ConfigurationError, match=r"^REDIS_LEASE_DURATION: must be from 2 to 60"):
        RedisLeaseBackend("redis://x", lease_duration=100, names=names)


# -- AzureBlobLeaseBackend --------------------------------------------------------------------------

@pytest.mark.parametrize("duration", [-1, 0, 14, 61])
def test_infinite_or_out_of_range_leases_are_refused(duration: int) -> None:
    with pytest.raises(ConfigurationError) as raised:
        backend("UseDevelopmentStorage=true", "c-x", lease_duration=duration)
    assert str(raised.value) == f"lease_duration: must be from 15 to 60 seconds (Azure's lease range), got {duration}"


@pytest.mark.parametrize(("options", "message"), [
    ({"lease_duration": 15.5}, "lease_duration: must be a whole number of seconds from 15 to 60 (Azure's lease "
                               "range), got 15.5"),
    ({"call_timeout": 0}, "call_timeout: must be a number of seconds above 0 and below the 15 s lease, got 0"),
    ({"lease_duration": 20, "names": {"lease_duration": "LEASE_DURATION"}, "call_timeout": 30},
     "call_timeout: must be a number of seconds above 0 and below the 20 s lease, got 30"),
    ({"lease_duration": 14, "names": {"lease_duration": "LEASE_DURATION"}},
     "LEASE_DURATION: must be from 15 to 60 seconds (Azure's lease range), got 14"),
])
def test_azure_bad_arguments_are_one_line_in_the_caller_s_terms(options: dict, message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        backend("UseDevelopmentStorage=true", "c-x", **options)
    assert str(raised.value) == message


@pytest.mark.parametrize(("container", "blob", "message"), [
    ("Bad_Name", "b", "container_name: must be 3-63 lowercase letters, digits and single hyphens, starting and "
                      "ending with a letter or digit (Azure's rule for container names), got 'Bad_Name'"),
    ("", "b", "container_name: must be 3-63 lowercase letters, digits and single hyphens, starting and ending "
              "with a letter or digit (Azure's rule for container names), got ''"),
    ("c-x", "", "blob_name: must be 1-1024 printable characters, not ending in a dot or a slash (Azure's rule "
                "for blob names), got ''"),
    ("c-x", "leader/", "blob_name: must be 1-1024 printable characters, not ending in a dot or a slash (Azure's "
                       "rule for blob names), got 'leader/'"),
])
def test_azure_names_are_checked_before_any_request(container: str, blob: str, message: str) -> None:
    """Azure would refuse them only at the first call (400 InvalidResourceName), in its own words."""
    with pytest.raises(ConfigurationError) as raised:
        AzureBlobLeaseBackend("UseDevelopmentStorage=true", container, blob)
    assert str(raised.value) == message


def test_a_connection_string_the_sdk_refuses_is_named_not_shown() -> None:
    secret = "BlobEndpoint=;AccountKey=" + WRONG_KEY  # no endpoint: the SDK refuses it
    with pytest.raises(ConfigurationError) as raised:
        backend(secret, "c-x")
    assert str(raised.value) == "connection_string: is not accepted by the Azure SDK"
    assert raised.value.__cause__ is None and raised.value.__suppress_context__


# -- PostgresLeaseBackend ---------------------------------------------------------------------------

PG_URL = "postgresql://app:Pw-arg-777@db.internal:5432/weather"


def test_postgres_defaults_are_the_documented_ones() -> None:
    """A 5 s lease by the server's clock: renew every 1.6 s, look every 0.5 s, stop 1 s early."""
    backend = PostgresLeaseBackend(PG_URL)
    timing = backend.default_timing()
    assert (timing.lease_duration, timing.renew_interval, timing.acquire_interval, timing.safety_margin) == (
        5.0, 1.6, 0.5, 1.0)
    assert backend.lease_basis == "lease_duration 5 s"
    assert backend.description == "PostgreSQL db.internal:5432/weather, table distributed_mutex_leases, election 'leader'"
    assert "Pw-arg-777" not in backend.description


@pytest.mark.parametrize(("arguments", "message"), [
    ({"url": "mysql://db/weather"}, "url: must start with postgresql:// (a libpq URL), got mysql://"),
    ({"url": "host=db dbname=weather"}, "url: must be a libpq URL like postgresql://user@host:5432/database "
                                        "(key=value connection strings are not taken here)"),
    ({"url": "postgresql://app:Pw-arg-777@db:0/weather"},
     "url: postgresql://app:***@db:0/weather: the port must be a number from 1 to 65535"),
    ({"url": None}, "url: must be a PostgreSQL URL like postgresql://user@host:5432/database, got nothing"),
    ({"election": ""}, "election: must be 1-200 printable characters (the election's row in the table), got ''"),
    ({"table": "Leases"}, "table: must be a lower-case SQL identifier (letters, digits and _, not starting with "
                          "a digit), schema.table allowed, got 'Leases'"),
    ({"table": "a.b.c"}, "table: must be a lower-case SQL identifier (letters, digits and _, not starting with "
                         "a digit), schema.table allowed, got 'a.b.c'"),
    ({"lease_duration": 1}, "lease_duration: must be from 2 to 300 seconds, got 1"),
    ({"lease_duration": math.inf}, "lease_duration: must be a number of seconds from 2 to 300, got inf"),
    ({"lease_duration": "5"}, "lease_duration: must be a number of seconds from 2 to 300, got '5'"),
    ({"call_timeout": 1.6}, "call_timeout: must be a number of seconds from 0.05 and below the 1.6 s renew "
                            "interval, got 1.6"),
    ({"call_timeout": 0}, "call_timeout: must be a number of seconds from 0.05 and below the 1.6 s renew "
                          "interval, got 0"),
    ({"pooled": "yes"}, "pooled: must be True or False, got 'yes'"),
    ({"notify_url": "db:5432"}, "notify_url: must be a libpq URL like postgresql://user@host:5432/database "
                                "(key=value connection strings are not taken here)"),
])
def test_postgres_bad_arguments_are_one_line_naming_the_argument(arguments: dict[str, Any], message: str) -> None:
    given = {"url": PG_URL, **arguments}
    with pytest.raises(ConfigurationError) as caught:
        PostgresLeaseBackend(**given)
    assert str(caught.value) == message
    assert "Pw-arg-777" not in str(caught.value)


def test_postgres_messages_use_the_callers_names() -> None:
    with pytest.raises(ConfigurationError, match=r"^POSTGRES_LEASE_DURATION: must be from 2 to 300 seconds, got 400$"):
        PostgresLeaseBackend(PG_URL, lease_duration=400, names={"lease_duration": "POSTGRES_LEASE_DURATION"})
