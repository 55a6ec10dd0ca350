"""The limits a Raft peer's listener holds its connections to, its rate-limited warnings, and
the open-files limit the connection cap needs (see listener.py)."""

from __future__ import annotations

import logging
import resource
import threading
import time
from dataclasses import dataclass

log = logging.getLogger("DistributedMutex.backends.raft.listener")  # the listener's lines

RESERVED_FDS = 64  # kept for the state file, the peer links and the rest of the process


@dataclass(frozen=True)
class ListenerLimits:
    max_connections: int = 512
    max_per_source: int = 128
    idle_timeout: float = 60.0  # no complete message for this long: closed (a link reconnects)
    write_timeout: float = 5.0  # a status reply not read by then: closed
    handshake_timeout: float = 5.0  # TLS: a handshake not done by then is closed (a peer's takes milliseconds)
    queue_quota: int = 32  # messages of one connection waiting for the driver, at most
    log_interval: float = 10.0  # rate-limited warnings: per kind, so many lines per interval
    log_burst: int = 3


class LogLimiter:
    """At most ``burst`` warnings of each kind per ``interval``, then one line counting the rest."""

    def __init__(self, logger: logging.Logger, interval: float, burst: int) -> None:
        self._log = logger
        self._interval = interval
        self._burst = burst
        self._lock = threading.Lock()
        self._windows: dict[str, list[float]] = {}  # kind -> [window start, shown, suppressed]

    def warning(self, kind: str, message: str, *args: object, exc_info: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            self._roll(now)
            window = self._windows.setdefault(kind, [now, 0, 0])
            show = window[1] < self._burst
            window[1 if show else 2] += 1
        if show:
            self._log.warning(message, *args, exc_info=exc_info)

    def flush(self) -> None:
        """Say how many warnings were held back in the intervals that are over."""
        if not self._windows:  # the common case, at every idle moment: no lock to take
            return
        with self._lock:
            self._roll(time.monotonic())

    def _roll(self, now: float) -> None:
        for kind, (start, _, suppressed) in list(self._windows.items()):
            if now - start >= self._interval:
                del self._windows[kind]
                if suppressed:
                    self._log.warning("raft: %d more %s not logged in the last %.0f s", suppressed, kind,
                                      now - start)


def raise_fd_limit(max_connections: int) -> int:
    """Raise this process's soft limit on open files to what the cap needs (up to the hard
    limit); the cap that fits, if the hard limit is lower."""
    need = max_connections + RESERVED_FDS
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < need:
        target = need if hard == resource.RLIM_INFINITY else min(need, hard)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("raft: cannot raise the open files limit to %d (%s)", target, exc)
    if soft != resource.RLIM_INFINITY and soft < need:
        fitting = max(16, soft - RESERVED_FDS)
        log.warning("raft: the open files limit (%d) allows %d incoming connections, not %d", soft, fitting,
                    max_connections)
        return fitting
    return max_connections
