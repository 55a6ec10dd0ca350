"""Who leads, and when that changes, without contending: modelled on etcd's ``Observe``.

    for leader in observe(backend):                  # blocking; the current state first
        print(leader.instance_id, leader.term)       # instance_id None: nobody leads now

    async for leader in observe_async(backend):      # the same, as an async iterator
        ...

    LeaderObserver(backend).current()                # one look

Any backend works, with the same record (``ObservedLeader``: instance_id, host, pid, term, since):
the observer reads ``read_leader()``, and asks again as soon as the backend's ``watch(wake)`` says
who leads may have changed, or else every ``interval`` seconds (1 s by default). How soon a change
is seen, per backend (docs/library.md):

    postgres, redis   at once for a grant or a release (NOTIFY, pub/sub); an expiry within interval
    azure, zookeeper  within ``interval`` (each look is one read: a blob's properties, a listing)
    raft              within ``interval`` (each look asks every peer; a member's own node at once)

Give the observer a backend of its own, not the one a DistributedMutex contends with: ``watch``
takes one callback, and the observer's would replace the election loop's.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from DistributedMutex.backend import ElectionBackend, LeaderRecord
from DistributedMutex.errors import ConfigurationError, StorageRejectedError, StorageUnavailableError

log = logging.getLogger(__name__)
DEFAULT_INTERVAL = 1.0


@dataclass(frozen=True)
class ObservedLeader:
    """Who leads, as any backend says it; ``instance_id`` None: nobody leads now.

    ``term`` is the leader's fencing token (with nobody leading: the last term known, 0 if none);
    ``since`` when this leader took the lease (None if the backend does not say, or nobody leads).
    """

    backend: str
    instance_id: str | None
    term: int
    host: str | None = None
    pid: int | None = None
    since: datetime | None = None

    @property
    def leading(self) -> bool:
        return self.instance_id is not None

    @classmethod
    def of(cls, backend: str, record: LeaderRecord | None) -> ObservedLeader:
        if record is None:
            return cls(backend, None, 0)
        if not record.is_held or record.instance_id is None:
            return cls(backend, None, record.term)
        return cls(backend, record.instance_id, record.term, record.host, record.pid, record.acquired_at)

    def as_json(self) -> dict[str, Any]:
        """The JSON object ``distributed-mutex status`` prints."""
        return {"backend": self.backend, "leader_id": self.instance_id, "leader_host": self.host,
                "leader_pid": self.pid, "term": self.term,
                "since": self.since.isoformat() if self.since is not None else None}


class LeaderObserver:
    """Watches one backend (its own instance: see the module's docstring); ``close()`` closes it."""

    def __init__(self, backend: ElectionBackend, *, interval: float = DEFAULT_INTERVAL) -> None:
        if not isinstance(backend, ElectionBackend):
            raise ConfigurationError("backend", f"must be an ElectionBackend, got {type(backend).__name__}")
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or not 0.01 <= interval <= 3600 \
                or not math.isfinite(interval):
            raise ConfigurationError("interval", f"must be from 0.01 to 3600 seconds, got {interval!r}")
        self._backend = backend
        self._interval = float(interval)
        self._changed = threading.Event()
        self._wakers: set[Any] = set()  # asyncio waiters: (loop, event)
        self._lock = threading.Lock()
        self._watching = False
        self._closed = threading.Event()

    def current(self) -> ObservedLeader:
        """One look. Raises StorageUnavailableError (the backend did not answer) or StorageRejectedError."""
        return ObservedLeader.of(self._backend.name, self._backend.read_leader())

    def changes(self) -> Iterator[ObservedLeader]:
        """The current state, then each change (another leader, a new term, nobody), until close().
        A backend that does not answer is asked again every interval (logged once per outage);
        StorageRejectedError ends the iteration by raising."""
        self._watch()
        last: ObservedLeader | None = None
        outage = False
        while not self._closed.is_set():
            self._changed.clear()  # before looking: a change from now on is not missed
            try:
                seen = self.current()
            except StorageRejectedError:
                raise
            except StorageUnavailableError as exc:
                if not outage:
                    log.warning("cannot read who leads (asking again every %g s): %s", self._interval, exc)
                outage = True
            else:
                outage = False
                if seen != last:
                    last = seen
                    yield seen
            self._changed.wait(self._interval)

    async def changes_async(self) -> AsyncIterator[ObservedLeader]:
        """``changes`` for asyncio: the reads run in a thread, never on the event loop."""
        self._watch()
        loop = asyncio.get_running_loop()
        changed = asyncio.Event()
        waker = (loop, changed)
        with self._lock:
            self._wakers.add(waker)
        last: ObservedLeader | None = None
        outage = False
        try:
            while not self._closed.is_set():
                changed.clear()
                try:
                    seen = await asyncio.to_thread(self.current)
                except StorageRejectedError:
                    raise
                except StorageUnavailableError as exc:
                    if not outage:
                        log.warning("cannot read who leads (asking again every %g s): %s", self._interval, exc)
                    outage = True
                else:
                    outage = False
                    if seen != last:
                        last = seen
                        yield seen
                try:
                    await asyncio.wait_for(changed.wait(), self._interval)
                except asyncio.TimeoutError:
                    pass
        finally:
            with self._lock:
                self._wakers.discard(waker)

    def close(self) -> None:
        """Stop every iteration (at its next look) and close the backend."""
        self._closed.set()
        self._wake()
        self._backend.close()

    def __enter__(self) -> LeaderObserver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _watch(self) -> None:
        with self._lock:
            if self._watching:
                return
            self._watching = True
        self._backend.watch(self._wake)

    def _wake(self) -> None:
        """The backend's word (any thread): look again now."""
        self._changed.set()
        with self._lock:
            wakers = list(self._wakers)
        for loop, event in wakers:
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # that loop has closed
                pass


def observe(backend: ElectionBackend, *, interval: float = DEFAULT_INTERVAL) -> Iterator[ObservedLeader]:
    """Who leads now, then each change, for ever; leaving the loop (``break``) closes the backend."""
    observer = LeaderObserver(backend, interval=interval)
    try:
        yield from observer.changes()
    finally:
        observer.close()


async def observe_async(backend: ElectionBackend, *,
                        interval: float = DEFAULT_INTERVAL) -> AsyncIterator[ObservedLeader]:
    """``observe`` as an async iterator: ``async for leader in observe_async(backend): ...``."""
    observer = LeaderObserver(backend, interval=interval)
    try:
        async for state in observer.changes_async():
            yield state
    finally:
        observer.close()
