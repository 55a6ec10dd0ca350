"""What the election loop tells an observer: for metrics, health checks, audits.

The library does not depend on any metrics system: ``DistributedMutex(..., observer=...)`` takes an
``ElectionObserver``, whose methods all do nothing; override the ones you need. The demo's
Prometheus observer is in metrics.py.

    class Printer(ElectionObserver):
        def became_leader(self, term, lease_age, lease_duration):
            print("leading term", term)

Calls come from the election loop's thread, except ``lease_call``, which comes from the thread
that made the storage call. Methods must return quickly and must not block: the loop waits for
them. An observer that raises is logged once and then ignored; it never stops the election.

Times are given as durations, not as points on a clock: the loop may run on an injected clock,
the observer on its own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from enum import Enum
from typing import Any, TypeVar

from DistributedMutex.backend import AT_ONCE, ElectionBackend, Held, Identity, LeaderRecord, Lease
from DistributedMutex.errors import LeaseLostError, StorageRejectedError, StorageUnavailableError
from DistributedMutex.timing import ElectionTiming

log = logging.getLogger(__name__)
T = TypeVar("T")



class StepDownReason(str, Enum):
    """Why a leadership ended: the ``cause`` of lost_leadership, and a metric label (its value).

    A ``str`` too, so that an observer written against the words (``cause == "shutdown"``) works.
    """

    SHUTDOWN = "shutdown"  # stop() or a signal
    LEASE_LOST = "lease_lost"  # the backend said the lease is someone else's now
    DEADLINE = "deadline"  # no renewal succeeded before the local deadline
    TASK_FAILED = "task_failed"  # the leader task raised
    STALLED = "stalled"  # the leader task reported no progress for stall_timeout

    def __str__(self) -> str:
        return self.value


STEP_DOWN_CAUSES = tuple(reason.value for reason in StepDownReason)
# How a storage call ended: the ``outcome`` of lease_call ("held": an acquire found another leader).
OUTCOMES = ("ok", "held", "lost", "unavailable", "rejected", "error")
# Why a renewal did not succeed ("timeout": the loop stopped waiting for it at the deadline).
RENEWAL_FAILURES = ("timeout", "lost", "unavailable", "rejected", "error")
OPERATIONS = ("acquire", "renew", "release")


class ElectionObserver:
    """Override what you need; every method is a no-op here."""

    def election_started(self) -> None:
        """The election loop runs (called on its event loop, so ``asyncio.get_running_loop()`` works)."""

    def election_stopped(self) -> None:
        """The election loop has ended (shutdown, or a refusal it cannot go on from)."""

    def became_leader(self, term: int, lease_age: float, lease_duration: float) -> None:
        """This instance acts as leader from now on. ``lease_age``: seconds since the request that
        got (or last renewed) the lease was sent; the lease lasts at most ``lease_duration`` from it."""

    def renewed(self, term: int, lease_age: float) -> None:
        """A renewal succeeded; ``lease_age`` as in became_leader."""

    def renewal_failed(self, cause: str) -> None:
        """A renewal did not succeed; ``cause`` is one of RENEWAL_FAILURES. The leader retries
        until its deadline (``lost``: it steps down at once)."""

    def lost_leadership(self, term: int, cause: StepDownReason) -> None:
        """This instance has stopped acting as leader, for ``cause`` (its value: one of STEP_DOWN_CAUSES)."""

    def term_advanced(self, term: int) -> None:
        """The leader moved its term on (the store had seen a newer one)."""

    def leader_seen(self, leader_id: str, term: int) -> None:
        """A worker saw another instance lead (called when the leader or its term changes)."""

    def lease_call(self, operation: str, seconds: float, outcome: str) -> None:
        """A storage call of ``operation`` (OPERATIONS) took ``seconds`` and ended in ``outcome``
        (OUTCOMES). Called when the call really ends, even if the loop stopped waiting for it."""


def failure_class(exc: BaseException) -> str:
    """The outcome word for a storage call that raised."""
    if isinstance(exc, LeaseLostError):
        return "lost"
    if isinstance(exc, StorageUnavailableError):
        return "unavailable"
    if isinstance(exc, StorageRejectedError):
        return "rejected"
    return "error"


class GuardedObserver(ElectionObserver):
    """Calls another observer, so that its failures never reach the election loop."""

    def __init__(self, inner: ElectionObserver) -> None:
        self._inner = inner
        self._complained = False

    def _call(self, method: str, *args: Any) -> None:
        try:
            getattr(self._inner, method)(*args)
        except Exception as exc:  # noqa: BLE001 - an observer's bug must not cost the leadership
            if not self._complained:
                self._complained = True
                log.error("election observer %s failed (further failures not logged): %r",
                          type(self._inner).__name__, exc)

    def election_started(self) -> None:
        self._call("election_started")

    def election_stopped(self) -> None:
        self._call("election_stopped")

    def became_leader(self, term: int, lease_age: float, lease_duration: float) -> None:
        self._call("became_leader", term, lease_age, lease_duration)

    def renewed(self, term: int, lease_age: float) -> None:
        self._call("renewed", term, lease_age)

    def renewal_failed(self, cause: str) -> None:
        self._call("renewal_failed", cause)

    def lost_leadership(self, term: int, cause: StepDownReason) -> None:
        self._call("lost_leadership", term, cause)

    def term_advanced(self, term: int) -> None:
        self._call("term_advanced", term)

    def leader_seen(self, leader_id: str, term: int) -> None:
        self._call("leader_seen", leader_id, term)

    def lease_call(self, operation: str, seconds: float, outcome: str) -> None:
        self._call("lease_call", operation, seconds, outcome)


class ObservedBackend:
    """An ElectionBackend that times acquire, renew and release for an observer.

    Timed inside the calling thread, so a call the loop gave up waiting for is still reported,
    with its real duration, when its socket finally times out.
    """

    def __init__(self, backend: ElectionBackend, observer: ElectionObserver) -> None:
        self._backend = backend
        self._observer = observer
        self.name = backend.name

    def default_timing(self) -> ElectionTiming:
        return self._backend.default_timing()

    def acquire(self, identity: Identity, now: float) -> Lease | Held:
        return self._timed("acquire", self._backend.acquire, identity, now)

    def renew(self, lease: Lease, now: float) -> Lease:
        return self._timed("renew", self._backend.renew, lease, now)

    def release(self, lease: Lease) -> None:
        self._timed("release", self._backend.release, lease)

    def answers_at_once(self, call: str) -> bool:
        """The backend's own answer (backend.AT_ONCE); timing the call changes nothing about it."""
        at_once = getattr(self._backend, AT_ONCE, None)
        return bool(at_once(call)) if at_once is not None else False

    def advance_term(self, lease: Lease, identity: Identity, at_least: int) -> Lease:
        return self._backend.advance_term(lease, identity, at_least)

    def read_leader(self) -> LeaderRecord | None:
        return self._backend.read_leader()

    def watch(self, wake: Callable[[], None]) -> None:
        self._backend.watch(wake)

    def close(self) -> None:
        self._backend.close()

    def _timed(self, operation: str, call: Callable[..., T], *args: Any) -> T:
        started = time.monotonic()
        try:
            result = call(*args)
        except BaseException as exc:
            self._observer.lease_call(operation, time.monotonic() - started, failure_class(exc))
            raise
        self._observer.lease_call(operation, time.monotonic() - started,
                                  "held" if isinstance(result, Held) else "ok")
        return result
