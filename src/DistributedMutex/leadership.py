"""One leadership: from the acquire that won the lease until the lease is given back.

    acquired too late to act on safely?  give it back
    its last holder may still be acting? hold it without acting until that holder has stopped
    act: run the leader task, renew every renew interval, until a reason to step down
         (StepDownReason: shutdown, lease lost, the local deadline, a failed or stalled task)
    stop the leader task (cancel it, wait for it, bounded), then release the lease

Safety: the leader acts only until ``sent_at + lease_duration - safety_margin`` of its last
successful acquire/renew, on a monotonic clock (its *local deadline*). The storage cannot end the
lease before ``sent_at + lease_duration`` (it started the lease after we sent the request), so
leader work is stopped before anyone else can take the lease. A renewal that succeeds is not proof
of continuity (an expired Azure lease can be renewed if nobody took it): the local deadline
decides, and no renewal is sent after it.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from typing import Any

from DistributedMutex.backend import Identity, LeaderRecord, Lease
from DistributedMutex.calls import EventWaits, StorageCalls, first_of
from DistributedMutex.errors import LeaseLostError, StorageUnavailableError
from DistributedMutex.journal import LeadershipJournal
from DistributedMutex.observer import ElectionObserver, StepDownReason, failure_class
from DistributedMutex.roles import LeaderContext, LeaderTask, RoleRun
from DistributedMutex.timing import ElectionTiming

log = logging.getLogger("DistributedMutex.mutex")  # the loop's logger: one name for the loop's lines


@dataclass
class Election:
    """What the election loop's phases share (built by DistributedMutex.run_async)."""

    calls: StorageCalls
    identity: Identity
    timing: ElectionTiming
    clock: Callable[[], float]
    observer: ElectionObserver
    stopping: asyncio.Event
    # Set (from any thread, through the loop) when the backend says who leads may have changed.
    wake: asyncio.Event
    journal: LeadershipJournal | None
    shutdown_grace: float
    stall_timeout: float | None

    def acting_until(self, lease: Lease) -> float:
        """The local deadline of a lease: the leader stops acting here, a safety margin before
        the earliest moment another instance could be granted leadership."""
        return lease.sent_at + min(lease.duration, self.timing.lease_duration) - self.timing.safety_margin

    def renew_every(self, lease: Lease) -> float:
        """The renew interval, or less when the lease is shorter than the timing expects (a ZooKeeper
        server granted a shorter session than asked for): two renewals must fit in the acting window,
        so that a failed one is retried before the deadline."""
        return max(0.0, min(self.timing.renew_interval, (self.acting_until(lease) - lease.sent_at) / 2))


@dataclass(frozen=True)
class StepDown:
    """Why a leadership ended: the reason (for metrics and decisions) and the words (for people)."""

    reason: StepDownReason
    detail: str

    @property
    def lost(self) -> bool:
        """The lease is someone else's already: nothing to release."""
        return self.reason is StepDownReason.LEASE_LOST

    def __str__(self) -> str:
        return self.detail


class Leadership:
    """One lease held by this instance; ``term`` is the term it acts in (None when not acting)."""

    def __init__(self, election: Election, lease: Lease) -> None:
        self._e = election
        # The current lease, with the current term (advance_term moves it on); None once stepping down.
        self.lease: Lease | None = lease
        self.term: int | None = None
        self.acted_in: int | None = None  # the last term it acted in
        self.run: RoleRun | None = None

    async def lead(self, task: LeaderTask, leader: LeaderRecord | None) -> StepDown | None:
        """Act as leader while the lease provably lasts; why it ended, or None if the lease was
        given back before acting on it."""
        e, lease = self._e, self.lease
        assert lease is not None
        if e.clock() >= e.acting_until(lease):
            if e.acting_until(lease) <= lease.sent_at:
                log.error("the lease lasts %g s, no more than the %g s safety margin: this timing cannot work with"
                          " this backend (term %d); giving it back", lease.duration, e.timing.safety_margin,
                          lease.term)
            else:
                # The acquire itself took so long that the lease may be nearly over: do not act on it.
                log.warning("acquired the lease too late to act on it safely (term %d); giving it back", lease.term)
            await e.calls.release(lease)
            return None
        waited = await self._wait_for_predecessor(lease)
        if waited is None:
            self.lease = None
            return None
        self.lease = lease = waited
        self.term = self.acted_in = lease.term
        e.observer.became_leader(lease.term, e.clock() - lease.sent_at, lease.duration)
        log.info("became leader (term %d)", lease.term)
        if e.journal is not None:
            e.journal.started(e.identity.instance_id, lease.term)
        ctx = LeaderContext(e.identity.instance_id, lease.term, leader=leader, clock=e.clock,
                            acting_until=e.acting_until(lease), advance=self.advance_term)
        # Past its deadline, a sleep waits for this loop's word. A renewal sent before the deadline
        # moves it on by less than the acting window: after that, no answer can make the role go on.
        ctx.word_within = e.timing.acting_window
        run = self.run = RoleRun(task, ctx)
        lease, step = await self._hold(lease, run)
        assert step is not None  # no ``until``: only a reason to step down ends it
        self.lease = None
        # Stop leader work before the lease can end: at most until its earliest possible expiry.
        budget = lease.sent_at + lease.duration - e.clock()
        if e.stopping.is_set():
            budget = min(budget, e.shutdown_grace)
        finished = await run.stop(budget)
        term = self.term if self.term is not None else lease.term
        self.term = None
        e.observer.lost_leadership(term, step.reason)
        if finished:
            self._journal_stop(term, e.acting_until(lease), step.detail)
            if not step.lost:
                await e.calls.release(lease)
        elif not step.lost:
            log.warning("leader task is still running: not releasing the lease; it expires by itself")
        log.info("lost leadership: %s", step.detail)
        if not finished:
            if not e.stopping.is_set():
                await self._wait_until_finished(run)
            # It acted (or may have) until now: the journal must not claim it stopped earlier.
            self._journal_stop(term, math.inf, step.detail + ("; the leader task returned only now" if run.task.done()
                                                              else "; the leader task was still running at exit"))
        return step

    async def advance_term(self, ctx: LeaderContext, at_least: int) -> int:
        """LeaderContext.advance_term: a term of at least ``at_least``, written under the lease.

        Only the lease holder can write the record, and only before its local deadline: a stale
        leader cannot use this to get around the fencing check.
        """
        e, lease = self._e, self.lease
        if lease is None or ctx.ended.is_set():
            raise LeaseLostError("not the leader any more")
        remaining = e.acting_until(lease) - e.clock()
        if remaining <= 0:
            raise LeaseLostError("past the local deadline")
        attempt = e.calls.start(e.calls.backend.advance_term, lease, e.identity, at_least, name="advance-term")
        try:
            await asyncio.wait({attempt}, timeout=remaining)
        except asyncio.CancelledError:
            # The task was cancelled (the role ended) with the call in flight: it may still write to
            # the storage, so the next acquire waits for it (StorageCalls.drain).
            e.calls.abandon(attempt)
            raise
        if not attempt.done():
            e.calls.abandon(attempt)
            raise StorageUnavailableError("advancing the term timed out")
        advanced = attempt.result()
        if self.lease is None or ctx.ended.is_set():
            raise LeaseLostError("not the leader any more")
        self.lease = replace(self.lease, term=advanced.term)
        old, self.term, ctx.term = ctx.term, advanced.term, advanced.term
        self.acted_in = advanced.term
        e.observer.term_advanced(advanced.term)
        log.info("term advanced from %s to %d: the store had seen a newer term", old, advanced.term)
        return advanced.term

    async def _wait_for_predecessor(self, lease: Lease) -> Lease | None:
        """Hold the lease without acting while its previous holder may still be acting.

        Only when the storage granted a lease that its last holder had renewed too recently to
        have run out: the storage lost it (Azurite forgets leases when it restarts). That holder
        acts until its own deadline, at most ``predecessor_until - safety_margin``.
        """
        e = self._e
        quiet_until = lease.predecessor_until - e.timing.safety_margin
        wait = quiet_until - e.clock()
        if wait <= 0:
            return lease
        log.warning("got the lease (term %d) although its last holder renewed it %.1f s ago: the storage "
                    "lost it; waiting %.1f s before acting, until that holder has stopped", lease.term,
                    lease.duration - (lease.predecessor_until - e.clock()), wait)
        lease, step = await self._hold(lease, None, until=quiet_until)
        if step is None:
            return lease
        if not step.lost:
            await e.calls.release(lease)
        log.info("gave the lease up before acting on it: %s", step.detail)
        return None

    async def _hold(self, lease: Lease, run: RoleRun | None,
                    until: float = math.inf) -> tuple[Lease, StepDown | None]:
        """Renew until a reason to step down, or ``until`` (None then); returns the latest lease too."""
        waits = EventWaits(self._e.stopping, self._e.wake)  # the same two tasks for every wait below
        try:
            return await self._holding(lease, run, until, waits)
        finally:
            waits.close()

    async def _holding(self, lease: Lease, run: RoleRun | None, until: float,
                       waits: EventWaits) -> tuple[Lease, StepDown | None]:
        e = self._e
        next_renewal = lease.sent_at + e.renew_every(lease)
        last_error = "no answer"
        watched: list[Awaitable[Any]] = [run.task] if run is not None else []
        while True:
            deadline = e.acting_until(lease)
            stalled_at = self._stall_deadline(run) if watched else math.inf
            now = e.clock()
            if now >= deadline:
                return lease, StepDown(StepDownReason.DEADLINE, f"no renewal within {deadline - lease.sent_at:g} s"
                                                                f" of the last one (last error: {last_error})")
            if now >= stalled_at:
                return lease, StepDown(StepDownReason.STALLED, f"leader work made no progress for "
                                                               f"{e.stall_timeout:g} s; giving the lease up for a"
                                                               " healthy instance")
            if now >= until:
                return lease, None
            await first_of([*watched, *waits.tasks()], timeout=min(next_renewal, deadline, stalled_at, until) - now)
            if e.stopping.is_set():
                return lease, StepDown(StepDownReason.SHUTDOWN, "shutting down")
            if e.wake.is_set():
                # The backend says leadership may have changed (a lost session, a higher term):
                # find out now with a renewal rather than act on until the next one.
                e.wake.clear()
                next_renewal = min(next_renewal, e.clock())
            if run is not None and run.task in watched and run.task.done():
                watched = []
                if run.failure() is not None:
                    run.report()
                    return lease, StepDown(StepDownReason.TASK_FAILED, "leader task failed")
                log.info("leader task returned; keeping the lease until stopped")
            if e.clock() < next_renewal or e.clock() >= deadline or e.clock() >= until:
                continue
            e.wake.clear()  # a change from now on cuts this renewal short (below)
            sent = e.clock()
            attempt = e.calls.start(e.calls.backend.renew, lease, sent, name="renew")
            if not attempt.done():  # done already: the backend answered at once (backend.AT_ONCE)
                await first_of([attempt, *waits.tasks()], timeout=deadline - sent)
            if not attempt.done():
                e.calls.abandon(attempt)
                if e.wake.is_set() and not e.stopping.is_set():
                    # Woken while the renewal hangs (say, a ZooKeeper session just suspended): ask
                    # again at once rather than wait for this call, which may take its whole timeout;
                    # a backend that knows leadership may be gone answers the new one at once.
                    e.wake.clear()
                    next_renewal = e.clock()
                    continue
                if not e.stopping.is_set():
                    last_error = "renewal timed out"
                    e.observer.renewal_failed("timeout")
                next_renewal = e.clock()
                continue
            try:
                # The term may have been advanced meanwhile: self.lease carries the current one.
                lease = replace(attempt.result(), term=self.lease.term if self.lease else lease.term)
                self.lease = lease
            except LeaseLostError as exc:
                e.observer.renewal_failed("lost")
                return lease, StepDown(StepDownReason.LEASE_LOST, str(exc))
            except Exception as exc:  # noqa: BLE001 - unavailable, rejected or unforeseen: retry until the deadline
                e.observer.renewal_failed(failure_class(exc))
                last_error = str(exc)
                retry_in = min(e.timing.acquire_interval, e.timing.renew_interval)
                log.warning("renewal failed, retrying in %g s: %s", retry_in, exc)
                next_renewal = e.clock() + retry_in
            else:
                e.observer.renewed(lease.term, e.clock() - lease.sent_at)
                next_renewal = sent + e.renew_every(lease)
                if run is not None:
                    run.ctx.acting_until = e.acting_until(lease)

    def _stall_deadline(self, run: RoleRun | None) -> float:
        if run is None or self._e.stall_timeout is None:
            return math.inf
        return run.ctx.last_progress + self._e.stall_timeout

    def _journal_stop(self, term: int, deadline: float, reason: str) -> None:
        e = self._e
        if e.journal is not None:
            # The deadline is on our clock; the journal speaks CLOCK_MONOTONIC.
            acting_until = deadline + (time.monotonic() - e.clock())
            e.journal.stopped(e.identity.instance_id, term, acting_until, reason)

    async def _wait_until_finished(self, run: RoleRun) -> None:
        """Never lead again while the old leader task may still act: wait for it to return."""
        while not run.task.done():
            log.warning("waiting for the previous leader task to return before contending again")
            await asyncio.wait({run.task}, timeout=10)
