"""The ZooKeeper backend: the sequential-ephemeral-znode recipe, on kazoo (extra ``zookeeper``).

    backend.py    ZooKeeperBackend: the recipe (join the line, lead, watch the znode below, terms)
    session.py    the kazoo client under it: connecting, bounded calls, errors, state changes
    standby.py    the next in line's standby lease: a graceful handover without a round trip
    terms.py      the term base, read and raised; the leader as others read it
    znodes.py     the znodes' names and the identity in their data
    arguments.py  its arguments, checked, and the election timing its session implies
"""

from __future__ import annotations

from DistributedMutex.backends import is_missing, missing_extra

try:
    from DistributedMutex.backends.zookeeper.backend import ZooKeeperBackend
except ModuleNotFoundError as exc:
    if not is_missing(exc, "kazoo"):
        raise
    ZooKeeperBackend = missing_extra("ZooKeeperBackend", "kazoo", "zookeeper")  # type: ignore[misc]

__all__ = ["ZooKeeperBackend"]
