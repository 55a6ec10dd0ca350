"""The Redis backend: a lease on one key of one Redis primary (extra ``redis``).

    backend.py    RedisLeaseBackend: acquire, renew, release, advance_term as server-side scripts
    scripts.py    the Lua scripts, each comparing holder and term before it acts
    listener.py   the pub/sub subscriber that wakes the election loop when the holder changes
    arguments.py  its arguments checked (URL, key prefix, timeouts), and the timing its lease implies
    failures.py   redis-py's errors turned into the library's, with the password never shown
"""

from __future__ import annotations

from DistributedMutex.backends import is_missing, missing_extra

try:
    from DistributedMutex.backends.redis.backend import RedisLeaseBackend
except ModuleNotFoundError as exc:
    if not is_missing(exc, "redis"):
        raise
    RedisLeaseBackend = missing_extra("RedisLeaseBackend", "redis", "redis")  # type: ignore[misc]

__all__ = ["RedisLeaseBackend"]
