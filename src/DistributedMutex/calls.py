"""Storage calls off the event loop: bounded, and remembered while they may still land.

    StorageCalls   runs the backend's blocking calls off the loop, in one long-lived daemon thread
                   (threads.CallWorker); a call the loop stopped waiting for is remembered until it
                   returns, so that a late release never lands after the next acquire (with the
                   same lease id), and the calls after it run in a fresh thread meanwhile
    first_of       wait for the first of several awaitables, with a timeout
    EventWaits     tasks waiting on events, kept from one wait to the next
    OutageLog      one log line when the storage becomes unreachable, a reminder, one when it is back
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from DistributedMutex.backend import AT_ONCE, ElectionBackend, Lease
from DistributedMutex.threads import CallWorker

log = logging.getLogger("DistributedMutex.mutex")  # the loop's logger: one name for the loop's lines
T = TypeVar("T")


class StorageCalls:
    """The election loop's calls to its backend."""

    def __init__(self, backend: ElectionBackend, release_timeout: float) -> None:
        self.backend = backend
        self._release_timeout = release_timeout
        # Calls given up on (timed out) but maybe still in flight.
        self._abandoned: list[asyncio.Future[Any]] = []
        # One thread for every call while calls return; a hung one keeps its own thread until it
        # returns, and the next call gets a new thread (not a queue behind it: the loop must be able
        # to release or renew while an abandoned call hangs on a dead socket).
        self._worker = CallWorker("DistributedMutex-storage")
        self._at_once: Callable[[str], bool] | None = getattr(backend, AT_ONCE, None)

    def start(self, fn: Callable[..., T], *args: Any, name: str) -> asyncio.Future[T]:
        """``fn(*args)`` off the loop; ``name`` says which call it is (backend.AT_ONCE's names).

        Made here and now, its outcome in the returned future already, if the backend says this
        call answers at once (backend.AT_ONCE): handing it to the thread would cost two thread
        wake-ups for a call that does no I/O (a Raft renew every 0.3 s, and on a hand-over's path
        the new leader's acquire)."""
        at_once = self._at_once
        if at_once is not None and at_once(name):
            future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
            try:
                future.set_result(fn(*args))
            except Exception as exc:  # noqa: BLE001 - handed to the awaiting coroutine, as from the thread
                future.set_exception(exc)
            return future
        return self._worker.start(fn, *args)

    def close(self) -> None:
        """The election has stopped: end the idle worker thread (a call still in flight ends its
        own). A later start() starts one again."""
        self._worker.close()

    def abandon(self, call: asyncio.Future[Any]) -> None:
        """Stop waiting for a storage call, but remember it until its thread is done."""
        # Its outcome no longer matters; retrieving it keeps asyncio from reporting
        # "Future exception was never retrieved" when the loop ends before it is drained.
        call.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._abandoned.append(call)

    async def drain(self, stopping: asyncio.Event) -> bool:
        """Wait for abandoned calls to finish (their sockets time out); False if stopped meanwhile."""
        self._abandoned = [call for call in self._abandoned if not call.done()]
        if self._abandoned:
            await first_of([asyncio.wait(self._abandoned), stopping.wait()])
            for call in self._abandoned:
                if call.done() and not call.cancelled():
                    call.exception()  # retrieved: its outcome no longer matters
        return not stopping.is_set()

    async def release(self, lease: Lease) -> None:
        """Give the lease back, bounded by the release timeout; a failure is only logged (the lease
        then expires by itself)."""
        attempt = self.start(self.backend.release, lease, name="release")
        if not attempt.done():  # done already: the backend answered at once
            await asyncio.wait({attempt}, timeout=self._release_timeout)
        if not attempt.done():
            self.abandon(attempt)
            log.warning("releasing the lease timed out; it expires by itself")
        elif attempt.exception() is not None:
            log.warning("could not release the lease: %s", attempt.exception())

    async def give_back_if_acquired(self, attempt: asyncio.Future[Any]) -> None:
        """Stopped while an acquire was in flight: if it won, release at once (bounded)."""
        await asyncio.wait({attempt}, timeout=self._release_timeout)
        if attempt.done() and not attempt.cancelled() and attempt.exception() is None:
            result = attempt.result()
            if isinstance(result, Lease):
                await self.release(result)
        elif not attempt.done():
            attempt.cancel()


class EventWaits:
    """One task per event waiting for it to be set, made again only once it is done: for a loop
    that waits on the same events over and over (the leader's, every renew interval), so that no
    wait makes and cancels tasks of its own. Pass ``tasks()`` to ``first_of``; ``close()`` at the end."""

    def __init__(self, *events: asyncio.Event) -> None:
        self._events = events
        self._tasks = [asyncio.ensure_future(event.wait()) for event in events]

    def tasks(self) -> list[asyncio.Future[Any]]:
        """The waiting tasks; one that is done (its event was set, maybe cleared since) is made
        anew, so it waits for the next time its event is set (or returns at once if it is set)."""
        for i, task in enumerate(self._tasks):
            if task.done():
                self._tasks[i] = asyncio.ensure_future(self._events[i].wait())
        return list(self._tasks)

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()


async def first_of(awaitables: list[Awaitable[Any]], timeout: float | None = None) -> None:
    """Wait until the first of ``awaitables`` completes (or ``timeout``).

    Coroutines are wrapped in tasks of our own and cancelled afterwards; futures that were passed
    in (a role task, a storage call) are left running for the caller to inspect.
    """
    futures = [asyncio.ensure_future(a) for a in awaitables]
    owned = [f for f, a in zip(futures, awaitables, strict=True) if f is not a]
    try:
        await asyncio.wait(futures, timeout=None if timeout is None else max(0.0, timeout),
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        for future in owned:
            future.cancel()


class OutageLog:
    """One line when storage becomes unreachable, a reminder every 30 s, one when it is back."""

    REMIND_EVERY = 30.0

    def __init__(self) -> None:
        self._since: float | None = None
        self._last_said = 0.0
        self._failures = 0

    def failed(self, message: str) -> None:
        now = time.monotonic()
        self._failures += 1
        if self._since is None:
            self._since, self._last_said = now, now
            log.warning("%s (retrying)", message)
        elif now - self._last_said >= self.REMIND_EVERY:
            self._last_said = now
            log.warning("%s (still failing after %d attempts, %.0f s)",
                        message, self._failures, now - self._since)

    def recovered(self) -> None:
        if self._since is not None:
            log.info("lease storage reachable again after %.1f s", time.monotonic() - self._since)
        self._since, self._failures = None, 0
