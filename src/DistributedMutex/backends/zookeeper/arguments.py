"""The ZooKeeper backend's arguments, checked, and the election timing its session implies.

Every check takes ``name``, the argument in the caller's terms: ZooKeeperBackend passes its own
(``hosts``, ``path``, ``session_timeout``), a program that reads them from settings passes its
settings' names (the demo: ZOOKEEPER_HOSTS...).
"""

from __future__ import annotations

import re

from DistributedMutex.addresses import host_port
from DistributedMutex.errors import ConfigurationError
from DistributedMutex.timing import ElectionTiming

_ZNODE_SEGMENT = re.compile(r"^[A-Za-z0-9._-]{1,255}$")
# session_timeout, seconds. A ZooKeeper server grants 2 to 20 of its ticks by default
# (minSessionTimeout, maxSessionTimeout): 4 to 40 s at its default tickTime of 2 s. Above 40 s such
# a server grants less than asked, and the timing derived from the asked timeout renews too seldom
# for the granted one (from 100 s up a leader would step down before its first renewal). 2 s, not
# 4, at the low end: a server with a shorter tick grants it, and a default one rounds it up to 4 s,
# which only lengthens the lease.
SESSION_TIMEOUT_RANGE = (2.0, 40.0)
DEFAULT_SESSION_TIMEOUT = 5.0
DEFAULT_PATH = "/election"


def zookeeper_timing(session_timeout: float) -> ElectionTiming:
    """The session is the lease: it outlives a request the server answered by its timeout.

    The leader renews about as often as kazoo would ping anyway (after a third of the session
    timeout without a request, less a random 0.01-0.4 s): a renewal is a request, so kazoo then
    sends no ping, and the session of a leader that crashes was last heard of no later than an
    idle kazoo client's. Renewing more often makes the server keep a crashed leader's session
    longer: every renewal moves its expiry on (measured: a 1 s renewal at a 5 s session took over
    about 0.8 s later after a SIGKILL than kazoo's own recipe). Two renewals still fit in the
    acting window: 2 x (t/3 - 0.2) <= t - max(0.5, t/5) for every t from 2 to 40 s."""
    margin = max(0.5, session_timeout / 5)
    return ElectionTiming(lease_duration=session_timeout, renew_interval=session_timeout / 3 - 0.2,
                          acquire_interval=min(1.0, session_timeout), safety_margin=margin)


def parse_session_timeout(name: str, value: str | float) -> float:
    """Seconds within SESSION_TIMEOUT_RANGE."""
    try:
        if isinstance(value, bool):
            raise TypeError(value)
        seconds = float(value)
    except (TypeError, ValueError):
        raise ConfigurationError(name, f"must be a number of seconds, got {value!r}") from None
    shown = value.strip() if isinstance(value, str) else f"{seconds:g}"
    low, high = SESSION_TIMEOUT_RANGE
    if not low <= seconds <= high:  # also refuses nan
        raise ConfigurationError(name, f"must be from {low:g} to {high:g} seconds (ZooKeeper grants 2 to 20 of its "
                                       f"ticks: 4 to 40 s at its default tickTime of 2 s), got {shown}")
    return seconds


def parse_zookeeper_hosts(name: str, value: str, *, path_name: str = "the path argument") -> str:
    """host[:port] pairs, comma-separated; a chroot suffix is refused (``path_name``, the path
    argument, says where)."""
    if not isinstance(value, str):
        raise ConfigurationError(name, f"must be a string of host:port pairs like '127.0.0.1:2181', got {value!r}")
    hosts = []
    for entry in (part.strip() for part in value.split(",")):
        if "/" in entry:
            raise ConfigurationError(name, f"{entry!r} has a path: give the znode path in {path_name} instead")
        host, port = host_port(name, entry, default_port=2181)
        hosts.append(f"{host}:{port}")
    return ",".join(hosts)


def parse_znode_path(name: str, value: str) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(name, f"must be an absolute znode path like /election, got {value!r}")
    path = value.strip()
    segments = path.split("/")[1:]
    if not path.startswith("/") or path == "/" or not all(_ZNODE_SEGMENT.match(s) for s in segments):
        raise ConfigurationError(name, f"must be an absolute znode path like /election (letters, digits, "
                                       f". _ - between slashes, no trailing slash), got {path!r}")
    if segments[0] == "zookeeper" or any(s in (".", "..") for s in segments):
        raise ConfigurationError(name, f"{path!r} is reserved by ZooKeeper: choose another path")
    return path


def check_call_timeout(name: str, value: float | None, session_timeout: float) -> float:
    """The bound on each call and on connecting; by default the smaller of 3 s and half the
    session timeout (a call that outlasts the session could not renew a lease in time anyway)."""
    if value is None:
        return min(3.0, session_timeout / 2)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= session_timeout:
        raise ConfigurationError(name, f"must be a number of seconds above 0 and at most the "
                                       f"{session_timeout:g} s session timeout, got {value!r}")
    return float(value)
