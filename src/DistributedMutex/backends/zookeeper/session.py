"""The ZooKeeper session under the election: one kazoo client, connected on first use, every call
bounded, kazoo's errors turned into ours, and its connection states turned into wake-ups.

Kazoo's connection states drive the loop: SUSPENDED wakes it so that a leader's renewal fails at
once (the session may be expiring: stop acting now), LOST means our znode is gone (the next
acquire joins again with a new one), CONNECTED wakes it to look again if it was told of a loss.
Every call is bounded: kazoo's own calls would wait for a reconnection forever.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from kazoo.client import KazooClient, KazooState
from kazoo.exceptions import (
    AuthFailedError,
    BadArgumentsError,
    InvalidACLError,
    KazooException,
    NoAuthError,
    NoChildrenForEphemeralsError,
    UnimplementedError,
)
from kazoo.handlers.threading import KazooTimeoutError
from kazoo.interfaces import IAsyncResult
from kazoo.retry import KazooRetry

from DistributedMutex.errors import BackendError, StorageRejectedError, StorageUnavailableError
from DistributedMutex.timing import ElectionTiming

log = logging.getLogger(__name__)

# Errors that retrying cannot fix: the ACL refuses us, or the path cannot hold our znodes.
_REFUSED = (NoAuthError, AuthFailedError)
_UNUSABLE = (NoChildrenForEphemeralsError, BadArgumentsError, InvalidACLError, UnimplementedError)
_STATES = {KazooState.SUSPENDED: "suspended (reconnecting)", KazooState.LOST: "down (connecting)"}
# The kazoo versions whose connection log line _KazooLog reads the granted session timeout from:
# the range of the extra zookeeper in pyproject.toml (a test keeps the two the same).
KAZOO_VERSIONS = "kazoo>=2.10,<2.12"


class ZooKeeperSession:
    """``changed(state)`` is called first on every state change (from kazoo's thread; it must not
    block), then the loop is woken through ``wake`` when leadership may have changed."""

    def __init__(self, hosts: str, path: str, session_timeout: float, call_timeout: float,
                 names: Mapping[str, str], changed: Callable[[str], None]) -> None:
        self.hosts = hosts
        self.path = path
        self.asked = session_timeout
        self.call_timeout = call_timeout
        self._names = names
        self._changed = changed
        self.wake: Callable[[], None] | None = None
        self._granted_ms: int | None = None  # the session timeout the server granted, once connected
        self._said_granted: int | None = None
        # Serialises our calls (the loop may abandon one that then finishes late); kazoo's callbacks
        # never take it (they must not block), they only write single attributes.
        self._lock = threading.Lock()
        self.started = False
        self.closing = False
        # Set while the loop waits for a (re)connection it was told about: the next CONNECTED
        # wakes it. Not on a first connection made within a call, which goes on by itself.
        self._wake_on_connect = False
        self._kazoo_log = _KazooLog(self._granted)
        self.client = KazooClient(
            hosts=hosts, timeout=session_timeout, logger=self._kazoo_log,
            # Reconnect forever, at most a second apart: a session survives only if we reconnect
            # within its timeout (kazoo's default backoff grows to an hour).
            connection_retry=KazooRetry(max_tries=-1, delay=0.1, backoff=2, max_delay=1.0),
        )
        self.client.add_listener(self._on_state)

    def name(self, argument: str) -> str:
        """An argument as the caller calls it (ZooKeeperBackend's ``names``)."""
        return self._names.get(argument, argument)

    # -- connecting --------------------------------------------------------------------------

    def ready(self) -> KazooClient:
        """The client, connected: started on first use, bounded by the call timeout."""
        if not self.started:
            self.started = True
            # Kazoo's own start() stops the client again when the wait times out, which can block
            # for a session timeout; started in the background instead, it keeps trying and wakes
            # the loop when it gets through.
            self.client.start_async().wait(self.call_timeout)
            if not self.client.connected:
                self._wake_on_connect = True
                raise StorageUnavailableError(f"cannot connect to ZooKeeper at {self.hosts} ({self.name('hosts')}) "
                                              f"within {self.call_timeout:g} s; still trying{self._last_problem()}")
        self.check_connected(StorageUnavailableError)
        return self.client

    def check_connected(self, error: type[BackendError]) -> None:
        state = self.client.state
        if not self.started or state != KazooState.CONNECTED:
            shown = "closed" if not self.started else _STATES.get(state, state.lower())
            raise error(f"not connected to ZooKeeper at {self.hosts} ({self.name('hosts')}): connection "
                        f"{shown}{self._last_problem()}")

    def close(self) -> None:
        """End the session: ZooKeeper deletes our znode at once, and the next contender leads.

        Bounded by the call timeout: with the server out of reach kazoo's stop can take a session
        timeout, and the session then expires by itself anyway."""
        if not self.started:
            return
        self.started = False
        stopping = threading.Thread(target=self._stop_client, name="zookeeper-close", daemon=True)
        stopping.start()
        stopping.join(self.call_timeout)
        if stopping.is_alive():
            log.warning("closing the ZooKeeper session did not finish within %g s; it expires by itself",
                        self.call_timeout)

    def _stop_client(self) -> None:
        self.closing = True
        try:
            self.client.stop()
            self.client.close()
        except Exception as exc:  # noqa: BLE001 - closing is best effort; the session expires anyway
            log.warning("closing the ZooKeeper client failed (the session expires by itself): %s", exc)
        finally:
            self.closing = False

    # -- the session timeout the server granted ----------------------------------------------

    @property
    def session_id(self) -> int | None:
        client_id = self.client.client_id
        return client_id[0] if client_id else None

    @property
    def granted(self) -> float | None:
        """The session timeout the server granted, in seconds; None before the first connection."""
        return None if self._granted_ms is None else self._granted_ms / 1000

    def lease_duration(self) -> float:
        if self._granted_ms is None:
            # Never seen: kazoo no longer logs it as it did. Without it the lease has no safe length.
            raise StorageRejectedError(
                f"cannot tell which session timeout ZooKeeper granted: it is read from kazoo's connection log as "
                f"{KAZOO_VERSIONS} write it, and kazoo {_installed('kazoo')} is installed (the extra zookeeper "
                f"installs a version that fits: pip install 'distributed-mutex[zookeeper]')")
        return self._granted_ms / 1000

    def check_granted(self, timing: ElectionTiming) -> None:
        """Refuse a granted session timeout too short for ``timing`` (which comes from the one
        asked for): the server clamps what it grants (by default to at most 20 ticks, 40 s), and a
        leader must be able to renew twice within its acting window."""
        granted = self.lease_duration()
        # The loop renews more often on a lease shorter than the timing's (Election.renew_every),
        # so that two renewals fit; refused here is a lease whose acting window would be
        # at most half the one asked for.
        if granted <= timing.safety_margin + (timing.lease_duration - timing.safety_margin) / 2:
            raise StorageRejectedError(
                f"ZooKeeper at {self.hosts} granted a session timeout of {granted:g} s, far less than the "
                f"{self.asked:g} s asked for: a leader could not renew in time; set {self.name('session_timeout')} "
                f"to at most {granted:g}")

    def _granted(self, milliseconds: int) -> None:
        self._granted_ms = int(milliseconds)

    # -- calls -------------------------------------------------------------------------------

    def wait(self, result: IAsyncResult, action: str) -> Any:
        """Kazoo's answer within the call timeout (its own .get() waits for ever while reconnecting)."""
        try:
            return result.get(timeout=self.call_timeout)
        except KazooTimeoutError:
            raise StorageUnavailableError(f"ZooKeeper at {self.hosts} did not answer within "
                                          f"{self.call_timeout:g} s (to {action})") from None

    @contextmanager
    def serial(self, action: str) -> Iterator[None]:
        """One call at a time; kazoo's errors raised inside come out as ours."""
        if not self._lock.acquire(timeout=self.call_timeout):
            raise StorageUnavailableError(f"an earlier ZooKeeper call is still in flight; cannot {action}")
        try:
            yield
        except (KazooException, KazooTimeoutError) as exc:
            raise self.translate(exc, action) from None
        finally:
            self._lock.release()

    def translate(self, exc: BaseException, action: str) -> BackendError:
        what = type(exc).__name__
        if isinstance(exc, _REFUSED):
            return StorageRejectedError(f"ZooKeeper refused to let us {action} under {self.path} "
                                        f"({self.name('path')}): {what}: check the path's ACL", code=what)
        if isinstance(exc, _UNUSABLE):
            return StorageRejectedError(f"ZooKeeper cannot {action} under {self.path} ({self.name('path')}): "
                                        f"{what}", code=what)
        return StorageUnavailableError(f"ZooKeeper at {self.hosts} ({self.name('hosts')}) failed to {action}: "
                                       f"{what}", code=what)

    def _last_problem(self) -> str:
        problem = self._kazoo_log.last_problem
        return f" (last: {problem})" if problem else ""

    # -- what kazoo tells us -----------------------------------------------------------------

    def _on_state(self, state: str) -> None:
        """Kazoo's connection listener. Must not block: it only writes attributes and logs."""
        self._changed(state)
        if state == KazooState.SUSPENDED:
            self._wake_on_connect = True
            log.warning("ZooKeeper connection suspended: leadership stops now; the session (and our znode) "
                        "survives if we reconnect within %g s", self.granted or self.asked)
        elif state == KazooState.LOST:
            self._wake_on_connect = True
            if self.closing:
                log.info("ZooKeeper session closed")
            else:
                log.warning("ZooKeeper session lost (expired or closed by the server): our znode is gone; "
                            "joining again with a new one")
        else:
            self._kazoo_log.last_problem = None
            granted = self._granted_ms
            log.info("connected to ZooKeeper at %s (session 0x%x, timeout %g s)", self.hosts,
                     self.session_id or 0, (granted or 0) / 1000)
            if granted is not None and granted != self._said_granted:
                self._said_granted = granted
                if granted != round(self.asked * 1000):
                    log.warning("ZooKeeper granted a session timeout of %g s, not the %g s asked for "
                                "(%s; the server allows 2 to 20 ticks): leases last %g s", granted / 1000,
                                self.asked, self.name("session_timeout"), granted / 1000)
            if not self._wake_on_connect:
                return
            self._wake_on_connect = False
        if not self.closing:
            self.wake_loop()

    def wake_loop(self) -> None:
        wake = self.wake
        if wake is None:
            return
        try:
            wake()
        except Exception:  # a kazoo thread must survive whatever the callback does
            log.exception("waking the election loop failed")


def _installed(distribution: str) -> str:
    # Only on this error path: importlib.metadata pulls in email, zipfile, csv... (some MiB).
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:  # imported from a source tree, not installed
        return "of an unknown version"


class _KazooLog(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Kazoo's logger: reads the granted session timeout off its connection log, keeps its chatter
    at DEBUG (our listener says each state change in one line) but remembers its last complaint
    for our error messages, and drops its BLATHER level (some of those lines carry the session
    password)."""

    def __init__(self, granted: Callable[[int], None]) -> None:
        super().__init__(logging.getLogger("kazoo.client"), {})
        self._granted = granted
        self.last_problem: str | None = None  # e.g. "Connection dropped: socket connection error: ..."

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        # kazoo 2.11 protocol/connection.py: "Session created, session_id: %r session_passwd: %s\n
        # negotiated session timeout: %s ...", logged before the connection is reported CONNECTED.
        if isinstance(msg, str) and msg.startswith("Session created") and len(args) >= 3:
            self._granted(args[2])
        if level < logging.DEBUG:
            return
        if level >= logging.WARNING and msg != "Transition to CONNECTING":
            try:
                text = str(msg) % args if args else str(msg)
            except (TypeError, ValueError):
                text = str(msg)
            self.last_problem = " ".join(text.split())[:200]
        super().log(level if level >= logging.ERROR else logging.DEBUG, msg, *args, **kwargs)
