"""Prometheus metrics and a health verdict for an election (extra ``metrics``: prometheus-client).

``ElectionMetrics`` is an ElectionObserver (observer.py) that keeps Prometheus metrics in a
registry of its own and judges health (``health()``: a verdict and a JSON-ready body); serve
``registry`` with any Prometheus exporter, and ``health()`` from a health endpoint. A program adds
metrics of its own to the same registry (a subclass, or collectors registered on ``registry``).
Nothing else in the library imports this module, so prometheus_client is loaded only by those who
use it.

Labels hold fixed words only (operation, outcome, reason), never an error text, a URL or a
setting's value, so no secret can reach a label and the number of series stays bounded. The
instance is not a label of every metric: Prometheus adds its own ``instance`` label (the scraped
host:port), and the default instance id (``Identity.default()``: ``<hostname>-<pid>``) contains the
pid, which would start new series on every restart. ``leader_election_instance_info{instance_id=...}``
carries it once, to join on.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from typing import Any

from DistributedMutex.backends import is_missing
from DistributedMutex.errors import MissingExtraError
from DistributedMutex.observer import (
    OPERATIONS,
    OUTCOMES,
    RENEWAL_FAILURES,
    STEP_DOWN_CAUSES,
    ElectionObserver,
    StepDownReason,
)

try:
    from prometheus_client import (
        CollectorRegistry,
        Counter,
        Gauge,
        GCCollector,
        Histogram,
        Info,
        PlatformCollector,
        ProcessCollector,
    )
except ModuleNotFoundError as exc:  # the module is nothing but metrics: refuse it whole, in one line
    if not is_missing(exc, "prometheus_client"):
        raise
    raise MissingExtraError(__name__, "prometheus_client", "metrics") from None

# Lease calls have 3 s socket timeouts: fine steps below a second for the healthy case, and bounds
# at 2, 3 and 3.5 s to tell "slow" from "ran into the timeout"; an acquire makes up to three
# requests (create the blob, acquire, write the term), hence 6 and 10.
LEASE_CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 3.5, 6.0, 10.0)
# The election loop is stamped every LOOP_TICK s; /healthz fails when it has not been for
# LOOP_STALL_LIMIT s: a task that blocks the event loop keeps it from renewing and from stepping down.
LOOP_TICK = 0.5
LOOP_STALL_LIMIT = 5.0


class ElectionMetrics(ElectionObserver):
    """The election's metrics and health, fed by DistributedMutex (``observer=``).

    ``instance_id``: the instance's Identity.instance_id; ``backend``: the backend's name (its
    ``name`` attribute: azure, zookeeper, raft, memory), both for the info metric."""

    def __init__(self, instance_id: str, backend: str, registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # A registry of our own (not prometheus_client's global one): two instances in one process
        # (the tests) do not collide, and only what is named here is served.
        self.registry = registry if registry is not None else CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        self._clock = clock
        r = self.registry
        Info("leader_election_instance", "This instance's instance_id (its Identity) and election backend",
             registry=r).info({"instance_id": instance_id, "backend": backend})
        self.is_leader = Gauge("leader_election_is_leader", "1 while this instance acts as leader, else 0",
                               registry=r)
        self.term = Gauge("leader_election_term", "The term this instance leads in, or the latest term "
                          "it saw another instance lead in (0: none seen yet)", registry=r)
        self.transitions = Counter("leader_election_transitions", "Leadership changes of this instance: "
                                   "direction acquired or lost; reason (lost only) "
                                   + ", ".join(STEP_DOWN_CAUSES), ["direction", "reason"], registry=r)
        self.lease_call_seconds = Histogram("leader_election_lease_call_duration_seconds",
                                            "Duration of lease storage calls (acquire, renew, release)",
                                            ["operation"], buckets=LEASE_CALL_BUCKETS, registry=r)
        self.lease_calls = Counter("leader_election_lease_calls", "Lease storage calls by operation and "
                                   "outcome (ok, held, lost, unavailable, rejected, error)",
                                   ["operation", "outcome"], registry=r)
        self.renewal_failures = Counter("leader_election_renewal_failures", "Renewals that did not succeed, "
                                        "by reason (timeout, lost, unavailable, rejected, error)", ["reason"],
                                        registry=r)
        # Every series that can appear exists from the start (at 0), so that rate() and absent()
        # work before the first event.
        self.transitions.labels("acquired", "")
        for cause in STEP_DOWN_CAUSES:
            self.transitions.labels("lost", cause)
        for operation in OPERATIONS:
            self.lease_call_seconds.labels(operation)
        for cause in RENEWAL_FAILURES:
            self.renewal_failures.labels(cause)

        self._lock = threading.Lock()
        self._state = "starting"  # then "running", then "stopped"
        self._last_tick: float | None = None  # None: no event loop to watch
        self._tick_handle: asyncio.TimerHandle | None = None
        self._leading = False
        self._term: int | None = None
        self._lease_sent = 0.0  # our clock: when the last successful acquire/renew was sent
        self._lease_duration = 0.0

    # -- ElectionObserver ----------------------------------------------------------------------

    def election_started(self) -> None:
        with self._lock:
            self._state = "running"
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # called outside an event loop: nothing to watch
        self._tick(loop)

    def election_stopped(self) -> None:
        with self._lock:
            self._state = "stopped"
            handle, self._tick_handle = self._tick_handle, None
        if handle is not None:
            handle.cancel()

    def became_leader(self, term: int, lease_age: float, lease_duration: float) -> None:
        with self._lock:
            self._leading, self._term = True, term
            self._lease_sent, self._lease_duration = self._clock() - lease_age, lease_duration
        self.is_leader.set(1)
        self.term.set(term)
        self.transitions.labels("acquired", "").inc()

    def renewed(self, term: int, lease_age: float) -> None:
        with self._lock:
            self._lease_sent = self._clock() - lease_age

    def renewal_failed(self, cause: str) -> None:
        self.renewal_failures.labels(_known(cause, RENEWAL_FAILURES)).inc()

    def lost_leadership(self, term: int, cause: StepDownReason) -> None:
        with self._lock:
            self._leading = False
        self.is_leader.set(0)
        self.transitions.labels("lost", StepDownReason(cause).value).inc()

    def term_advanced(self, term: int) -> None:
        with self._lock:
            self._term = term
        self.term.set(term)

    def leader_seen(self, leader_id: str, term: int) -> None:
        with self._lock:
            if self._leading:
                return
            self._term = term
        self.term.set(term)

    def lease_call(self, operation: str, seconds: float, outcome: str) -> None:
        if operation not in OPERATIONS:
            return
        self.lease_call_seconds.labels(operation).observe(seconds)
        self.lease_calls.labels(operation, _known(outcome, OUTCOMES)).inc()

    # -- health --------------------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, body): unhealthy when the election loop is not running or has stalled, or when
        this instance still acts as leader although its lease may have ended."""
        now = self._clock()
        with self._lock:
            state, last_tick, leading, term = self._state, self._last_tick, self._leading, self._term
            since_renewal = now - self._lease_sent if leading else None
            duration = self._lease_duration
        problems = []
        if state != "running":
            problems.append(f"the election loop has {'not started' if state == 'starting' else 'stopped'}")
        elif last_tick is not None and now - last_tick > LOOP_STALL_LIMIT:
            problems.append(f"the election loop has been blocked for {now - last_tick:.1f} s")
        if since_renewal is not None and since_renewal > duration:
            # The storage may have given the lease to another instance by now: two leaders.
            problems.append(f"acting as leader {since_renewal:.1f} s after the last successful renewal was "
                            f"sent, longer than the {duration:g} s lease")
        return not problems, {
            "status": "ok" if not problems else "unhealthy",
            "role": "leader" if leading else "worker",
            "term": term,
            "seconds_since_renewal": None if since_renewal is None else round(since_renewal, 3),
            "problems": problems,
        }

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            if self._state != "running":
                return
            self._last_tick = self._clock()
            self._tick_handle = loop.call_later(LOOP_TICK, self._tick, loop)


def _known(word: str, words: tuple[str, ...]) -> str:
    """A label value from a fixed set; anything else becomes its last word ("other", "error"),
    so that no free text ever becomes a label."""
    return word if word in words else words[-1]
