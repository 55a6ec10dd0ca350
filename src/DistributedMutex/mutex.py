"""DistributedMutex: contend for a lease, lead while it is provably held, work otherwise.

The loop, top to bottom:

    while not stopped:
        run the worker task and try to take the lease every acquire interval
        got it: stop the worker task, run the leader task, renew every renew interval
        until shutdown, a lost lease, the local deadline without a renewal, or leader work that
        failed or reported no progress for the stall timeout:
            stop the leader task (cancel it, wait for it, bounded), then release the lease
        back to contending, forever: transient errors never end the loop

Safety: the instance acts as leader only until ``sent_at + lease_duration - safety_margin`` of its
last successful acquire/renew, on a monotonic clock. The storage cannot end the lease before
``sent_at + lease_duration`` (it started the lease after we sent the request), so leader work is
stopped before anyone else can take the lease. A renewal that succeeds is not proof of continuity
(an expired Azure lease can be renewed if nobody took it): the local deadline decides, and no
renewal is sent after it.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import random
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, TypeVar

from DistributedMutex.backend import ElectionBackend, Held, Identity, LeaderRecord, Lease
from DistributedMutex.errors import LeaseLostError, StorageRejectedError, StorageUnavailableError
from DistributedMutex.journal import LeadershipJournal
from DistributedMutex.observer import ElectionObserver, GuardedObserver, ObservedBackend, failure_class
from DistributedMutex.threads import run_in_daemon_thread
from DistributedMutex.timing import ElectionTiming, timing_for

log = logging.getLogger(__name__)
T = TypeVar("T")


class Role(Enum):
    WORKER = "worker"
    LEADER = "leader"


@dataclass
class RoleContext:
    """What a leader or worker task is given. ``term`` is the fencing token (None for workers)."""

    instance_id: str
    role: Role
    term: int | None = None
    leader: LeaderRecord | None = None  # the latest leader a worker has seen
    ended: threading.Event = field(default_factory=threading.Event)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    # Leaders: the local deadline (on ``clock``), moved on by every renewal. Checked by
    # is_active() itself, so work that asks before each action stops at the deadline even before
    # the election loop has noticed it (or when the process was frozen past it).
    acting_until: float = math.inf
    last_progress: float = field(default=0.0)
    # Leaders only: raise this leadership's term to at least N (see DistributedMutex._advance_term).
    advance_term: Callable[[int], Awaitable[int]] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.last_progress = self.clock()

    def report_progress(self) -> None:
        """Say the work is alive. A leader that stays silent for the stall timeout steps down:
        renewing the lease proves the process is alive, not that its leader work is."""
        self.last_progress = self.clock()

    def is_active(self) -> bool:
        """True while this role lasts: for a leader, while it may still act as leader."""
        return not self.ended.is_set() and self.clock() < self.acting_until

    def sleep(self, seconds: float) -> bool:
        """Sleep in a plain (thread) task; wakes early when the role ends. True if still active."""
        return not self.ended.wait(seconds)

    async def asleep(self, seconds: float) -> bool:
        """Sleep in an async task (which is cancelled when the role ends). True if still active."""
        await asyncio.sleep(seconds)
        return self.is_active()


RoleTask = Callable[[RoleContext], Awaitable[None] | None]


class _RoleRun:
    """A leader or worker task in flight: async tasks are cancelled, plain ones asked to return."""

    def __init__(self, fn: RoleTask, ctx: RoleContext) -> None:
        self.ctx = ctx
        self._reported = False
        self.is_async = inspect.iscoroutinefunction(fn)
        if self.is_async:
            self.task: asyncio.Future[Any] = asyncio.ensure_future(fn(ctx))  # type: ignore[arg-type]
        else:
            self.task = run_in_daemon_thread(fn, ctx, name=f"{ctx.role.value}-task")
        self.task.add_done_callback(lambda _: self.report())

    async def stop(self, timeout: float) -> bool:
        """End the task; True once it has really finished, False if it outlived ``timeout``."""
        self.ctx.ended.set()
        if self.is_async:
            self.task.cancel()
        await asyncio.wait({self.task}, timeout=max(0.0, timeout))
        self.report()
        return self.task.done()

    def failure(self) -> BaseException | None:
        if not self.task.done() or self.task.cancelled():
            return None
        exc = self.task.exception()
        return None if isinstance(exc, asyncio.CancelledError) else exc

    def report(self) -> None:
        exc = self.failure()
        if exc is not None and not self._reported:
            self._reported = True
            log.error("%s task failed: %s", self.ctx.role.value, exc, exc_info=exc)


class DistributedMutex:
    """Runs ``leader_task`` on exactly one instance and ``worker_task`` on all the others.

    Tasks are plain functions (run in a thread; they should check ``ctx.is_active()`` or use
    ``ctx.sleep``) or ``async`` functions (cancelled when the role ends). Both get a RoleContext.
    """

    def __init__(
        self,
        leader_task: RoleTask,
        worker_task: RoleTask | None = None,
        *,
        backend: ElectionBackend,
        identity: Identity | None = None,
        timing: ElectionTiming | None = None,
        clock: Callable[[], float] = time.monotonic,
        shutdown_grace: float = 1.5,
        release_timeout: float = 1.0,
        stall_timeout: float | None = None,
        journal: LeadershipJournal | None = None,
        observer: ElectionObserver | None = None,
    ) -> None:
        self._leader_task = leader_task
        self._worker_task = worker_task
        # Metrics and health checks hook in here (see observer.py); none: nothing is measured.
        self._observer = GuardedObserver(observer) if observer is not None else ElectionObserver()
        self._backend = ObservedBackend(backend, self._observer) if observer is not None else backend
        self._identity = identity or Identity.default()
        self._timing = timing_for(backend, timing)  # refuses a timing the backend cannot honour
        self._clock = clock
        self._shutdown_grace = shutdown_grace
        self._release_timeout = release_timeout
        self._stall_timeout = stall_timeout
        self._journal = journal
        # After giving up leadership for a failing or stalled task, let a healthy instance win.
        self._yield_for = 0.0
        self._stopping: asyncio.Event | None = None
        # Set (from any thread, through the loop) when the backend says who leads may have changed.
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seen_leader: tuple[str | None, int] | None = None
        self._outage = _OutageLog()
        self._lease: Lease | None = None
        # Storage calls given up on (timed out) but maybe still in flight: a late release must
        # never land after we acquired again with the same lease id.
        self._abandoned: list[asyncio.Future[Any]] = []
        self.role = Role.WORKER
        self.term: int | None = None
        self.leader: LeaderRecord | None = None

    # -- public surface ----------------------------------------------------------------------

    def run(self) -> None:
        """Block until SIGINT or SIGTERM; then stop leader work, release the lease and return."""
        asyncio.run(self.run_async(handle_signals=True))

    async def run_async(self, *, handle_signals: bool = False) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._backend.watch(self._on_wake)
        if handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._loop.add_signal_handler(signum, self._on_signal, signum)
        self._observer.election_started()
        try:
            while not self._stopping.is_set():
                lease = await self._contend_while_working()
                if lease is None:
                    break
                await self._lead(lease)
        finally:
            self._observer.election_stopped()
            if handle_signals:
                for signum in (signal.SIGINT, signal.SIGTERM):
                    self._loop.remove_signal_handler(signum)

    def stop(self) -> None:
        """Ask the loop to stop; safe to call from any thread."""
        self._set_in_loop(self._stopping)

    def _on_wake(self) -> None:
        """The backend's nudge (any thread): acquire or renew now rather than at the next interval."""
        self._set_in_loop(self._wake)

    def _set_in_loop(self, event: asyncio.Event | None) -> None:
        """Set one of the loop's events from any thread; nothing once the loop has ended."""
        loop = self._loop
        if loop is not None and event is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(event.set)
            except RuntimeError:  # the loop closed in between: it has stopped already
                pass

    @property
    def identity(self) -> Identity:
        return self._identity

    # -- contending --------------------------------------------------------------------------

    async def _contend_while_working(self) -> Lease | None:
        worker = self._start(self._worker_task, Role.WORKER, term=None)
        try:
            return await self._contend(worker)
        finally:
            if worker is not None and not await worker.stop(self._shutdown_grace):
                log.warning("worker task did not stop within %.1f s; going on", self._shutdown_grace)

    async def _contend(self, worker: _RoleRun | None) -> Lease | None:
        assert self._stopping is not None
        if self._yield_for > 0:
            await _first_of([asyncio.sleep(self._yield_for), self._stopping.wait()])
            self._yield_for = 0.0
        while not self._stopping.is_set():
            if not await self._drain_abandoned():
                return None
            assert self._wake is not None
            self._wake.clear()  # a change from now on wakes the next wait below
            sent = self._clock()
            attempt = run_in_daemon_thread(self._backend.acquire, self._identity, sent, name="acquire")
            await _first_of([attempt, self._stopping.wait()])
            if self._stopping.is_set():
                await self._give_back_if_acquired(attempt)
                return None
            try:
                result = attempt.result()
            except StorageUnavailableError as exc:
                self._outage.failed(f"cannot reach the lease storage: {exc}")
            except LeaseLostError as exc:
                log.info("lease taken away while recording the term (%s); contending again", exc)
            except StorageRejectedError:
                raise
            except Exception as exc:  # noqa: BLE001 - an unforeseen storage failure is not fatal
                self._outage.failed(f"unexpected error from the lease storage: {exc!r}")
            else:
                self._outage.recovered()
                if isinstance(result, Lease):
                    return result
                self._observe(result, worker)
            if worker is not None:
                worker.report()
            await _first_of([asyncio.sleep(self._jittered(self._timing.acquire_interval)),
                             self._stopping.wait(), self._wake.wait()])
        return None

    async def _give_back_if_acquired(self, attempt: asyncio.Future[Lease | Held]) -> None:
        """Stopped while an acquire was in flight: if it won, release at once (bounded)."""
        await asyncio.wait({attempt}, timeout=self._release_timeout)
        if attempt.done() and not attempt.cancelled() and attempt.exception() is None:
            result = attempt.result()
            if isinstance(result, Lease):
                await self._release(result)
        elif not attempt.done():
            attempt.cancel()

    def _observe(self, held: Held, worker: _RoleRun | None) -> None:
        leader = held.leader
        self.leader = leader
        if worker is not None:
            worker.ctx.leader = leader
        if leader is None or leader.instance_id is None:
            return
        seen = (leader.instance_id, leader.term)
        if seen != self._seen_leader:
            self._seen_leader = seen
            # The observer first: whoever reads the log line finds the metrics already saying so.
            self._observer.leader_seen(leader.instance_id, leader.term)
            log.info("leader is %s (term %d)", leader.instance_id, leader.term)

    # -- leading -----------------------------------------------------------------------------

    async def _lead(self, lease: Lease) -> None:
        if self._clock() >= self._acting_until(lease):
            if self._acting_until(lease) <= lease.sent_at:
                log.error("the lease lasts %g s, no more than the %g s safety margin: this timing cannot work with"
                          " this backend (term %d); giving it back", lease.duration, self._timing.safety_margin,
                          lease.term)
            else:
                # The acquire itself took so long that the lease may be nearly over: do not act on it.
                log.warning("acquired the lease too late to act on it safely (term %d); giving it back", lease.term)
            await self._release(lease)
            return
        # The renewals of the quiet wait below carry the term of *this* lease (see _hold).
        self._lease = lease
        waited = await self._wait_for_predecessor(lease)
        if waited is None:
            self._lease = None
            return
        lease = waited
        self.role, self.term = Role.LEADER, lease.term
        self._seen_leader = (self._identity.instance_id, lease.term)
        self._observer.became_leader(lease.term, self._clock() - lease.sent_at, lease.duration)
        log.info("became leader (term %d)", lease.term)
        if self._journal is not None:
            self._journal.started(self._identity.instance_id, lease.term)
        self._lease = lease
        run = self._start(self._leader_task, Role.LEADER, term=lease.term,
                          acting_until=self._acting_until(lease))
        lease, reason, lost = await self._hold(lease, run)
        assert reason is not None  # no ``until``: only a reason to step down ends it
        self._lease = None
        if reason.startswith(("leader task failed", "leader work made no progress")):
            self._yield_for = 2 * self._timing.acquire_interval + 1
        # Stop leader work before the lease can end: at most until its earliest possible expiry.
        budget = lease.sent_at + lease.duration - self._clock()
        if self._stopping is not None and self._stopping.is_set():
            budget = min(budget, self._shutdown_grace)
        finished = True if run is None else await run.stop(budget)
        term = self.term if self.term is not None else lease.term
        self.role, self.term = Role.WORKER, None
        self._observer.lost_leadership(term, _step_down_cause(reason, lost))
        if finished:
            self._journal_stop(term, self._acting_until(lease), reason)
        if not lost and finished:
            await self._release(lease)
        elif not lost:
            log.warning("leader task is still running: not releasing the lease; it expires by itself")
        log.info("lost leadership: %s", reason)
        if run is not None and not finished:
            if not self._stopping.is_set():
                await self._wait_until_finished(run)
            # It acted (or may have) until now: the journal must not claim it stopped earlier.
            self._journal_stop(term, math.inf, reason + "; the leader task returned only now"
                               if run.task.done() else reason + "; the leader task was still running at exit")

    async def _wait_for_predecessor(self, lease: Lease) -> Lease | None:
        """Hold the lease without acting while its previous holder may still be acting.

        Only when the storage granted a lease that its last holder had renewed too recently to
        have run out: the storage lost it (Azurite forgets leases when it restarts). That holder
        acts until its own deadline, at most ``predecessor_until - safety_margin``.
        """
        quiet_until = lease.predecessor_until - self._timing.safety_margin
        wait = quiet_until - self._clock()
        if wait <= 0:
            return lease
        log.warning("got the lease (term %d) although its last holder renewed it %.1f s ago: the storage "
                    "lost it; waiting %.1f s before acting, until that holder has stopped", lease.term,
                    lease.duration - (lease.predecessor_until - self._clock()), wait)
        lease, reason, lost = await self._hold(lease, None, until=quiet_until)
        if reason is None:
            return lease
        if not lost:
            await self._release(lease)
        log.info("gave the lease up before acting on it: %s", reason)
        return None

    def _journal_stop(self, term: int, deadline: float, reason: str) -> None:
        if self._journal is not None:
            # The deadline is on our clock; the journal speaks CLOCK_MONOTONIC.
            acting_until = deadline + (time.monotonic() - self._clock())
            self._journal.stopped(self._identity.instance_id, term, acting_until, reason)

    async def _hold(self, lease: Lease, run: _RoleRun | None,
                    until: float = math.inf) -> tuple[Lease, str | None, bool]:
        """Renew until a reason to step down, or ``until`` (reason None then); returns
        (latest lease, reason, lease known lost)."""
        assert self._stopping is not None
        timing = self._timing
        next_renewal = lease.sent_at + self._renew_every(lease)
        last_error = "no answer"
        watched: list[Awaitable[Any]] = [run.task] if run is not None else []
        while True:
            deadline = self._acting_until(lease)
            stalled_at = self._stall_deadline(run) if watched else math.inf
            now = self._clock()
            if now >= deadline:
                return lease, (f"no renewal within {deadline - lease.sent_at:g} s of the last one"
                               f" (last error: {last_error})"), False
            if now >= stalled_at:
                return lease, (f"leader work made no progress for {self._stall_timeout:g} s;"
                               " giving the lease up for a healthy instance"), False
            if now >= until:
                return lease, None, False
            assert self._wake is not None
            await _first_of([*watched, self._stopping.wait(), self._wake.wait()],
                            timeout=min(next_renewal, deadline, stalled_at, until) - now)
            if self._stopping.is_set():
                return lease, "shutting down", False
            if self._wake.is_set():
                # The backend says leadership may have changed (a lost session, a higher term):
                # find out now with a renewal rather than act on until the next one.
                self._wake.clear()
                next_renewal = min(next_renewal, self._clock())
            if run is not None and run.task in watched and run.task.done():
                watched = []
                if run.failure() is not None:
                    run.report()
                    return lease, "leader task failed", False
                log.info("leader task returned; keeping the lease until stopped")
            if self._clock() < next_renewal or self._clock() >= deadline or self._clock() >= until:
                continue
            self._wake.clear()  # a change from now on cuts this renewal short (below)
            sent = self._clock()
            attempt = run_in_daemon_thread(self._backend.renew, lease, sent, name="renew")
            await _first_of([attempt, self._stopping.wait(), self._wake.wait()], timeout=deadline - sent)
            if not attempt.done():
                self._abandon(attempt)
                if self._wake.is_set() and not self._stopping.is_set():
                    # Woken while the renewal hangs (say, a ZooKeeper session just suspended): ask
                    # again at once rather than wait for this call, which may take its whole timeout;
                    # a backend that knows leadership may be gone answers the new one at once.
                    self._wake.clear()
                    next_renewal = self._clock()
                    continue
                if not self._stopping.is_set():
                    last_error = "renewal timed out"
                    self._observer.renewal_failed("timeout")
                next_renewal = self._clock()
                continue
            try:
                # The term may have been advanced meanwhile: self._lease carries the current one.
                lease = replace(attempt.result(), term=self._lease.term if self._lease else lease.term)
                self._lease = lease
            except LeaseLostError as exc:
                self._observer.renewal_failed("lost")
                return lease, str(exc), True
            except Exception as exc:  # noqa: BLE001 - unavailable, rejected or unforeseen: retry until the deadline
                self._observer.renewal_failed(failure_class(exc))
                last_error = str(exc)
                retry_in = min(timing.acquire_interval, timing.renew_interval)
                log.warning("renewal failed, retrying in %g s: %s", retry_in, exc)
                next_renewal = self._clock() + retry_in
            else:
                self._observer.renewed(lease.term, self._clock() - lease.sent_at)
                next_renewal = sent + self._renew_every(lease)
                if run is not None:
                    run.ctx.acting_until = self._acting_until(lease)

    async def _advance_term(self, ctx: RoleContext, at_least: int) -> int:
        """Give this leadership a term of at least ``at_least``, written under the lease.

        For a store that has seen a newer term than the lease record (the blob was reset, or the
        container renamed, while the database was kept). Only the lease holder can write the
        record, and only before its local deadline: a stale leader cannot use this to get around
        the fencing check.
        """
        lease = self._lease
        if lease is None or ctx.ended.is_set():
            raise LeaseLostError("not the leader any more")
        remaining = self._acting_until(lease) - self._clock()
        if remaining <= 0:
            raise LeaseLostError("past the local deadline")
        attempt = run_in_daemon_thread(self._backend.advance_term, lease, self._identity, at_least)
        await asyncio.wait({attempt}, timeout=remaining)
        if not attempt.done():
            self._abandon(attempt)
            raise StorageUnavailableError("advancing the term timed out")
        advanced = attempt.result()
        if self._lease is None or ctx.ended.is_set():
            raise LeaseLostError("not the leader any more")
        self._lease = replace(self._lease, term=advanced.term)
        old, self.term, ctx.term = ctx.term, advanced.term, advanced.term
        self._observer.term_advanced(advanced.term)
        log.info("term advanced from %s to %d: the store had seen a newer term", old, advanced.term)
        return advanced.term

    def _acting_until(self, lease: Lease) -> float:
        """The local deadline of a lease: the leader stops acting here, a safety margin before
        the earliest moment another instance could be granted leadership."""
        return lease.sent_at + min(lease.duration, self._timing.lease_duration) - self._timing.safety_margin

    def _renew_every(self, lease: Lease) -> float:
        """The renew interval, or less when the lease is shorter than the timing expects (a ZooKeeper
        server granted a shorter session than asked for): two renewals must fit in the acting window,
        so that a failed one is retried before the deadline."""
        return max(0.0, min(self._timing.renew_interval, (self._acting_until(lease) - lease.sent_at) / 2))

    def _stall_deadline(self, run: _RoleRun | None) -> float:
        if run is None or self._stall_timeout is None:
            return math.inf
        return run.ctx.last_progress + self._stall_timeout

    async def _release(self, lease: Lease) -> None:
        attempt = run_in_daemon_thread(self._backend.release, lease, name="release")
        await asyncio.wait({attempt}, timeout=self._release_timeout)
        if not attempt.done():
            self._abandon(attempt)
            log.warning("releasing the lease timed out; it expires by itself")
        elif attempt.exception() is not None:
            log.warning("could not release the lease: %s", attempt.exception())

    def _abandon(self, call: asyncio.Future[Any]) -> None:
        """Stop waiting for a storage call, but remember it until its thread is done."""
        # Its outcome no longer matters; retrieving it keeps asyncio from reporting
        # "Future exception was never retrieved" when the loop ends before it is drained.
        call.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._abandoned.append(call)

    async def _drain_abandoned(self) -> bool:
        """Wait for abandoned storage calls to finish (their sockets time out); False if stopped."""
        assert self._stopping is not None
        self._abandoned = [call for call in self._abandoned if not call.done()]
        if self._abandoned:
            await _first_of([asyncio.wait(self._abandoned), self._stopping.wait()])
            for call in self._abandoned:
                if call.done() and not call.cancelled():
                    call.exception()  # retrieved: its outcome no longer matters
        return not self._stopping.is_set()

    async def _wait_until_finished(self, run: _RoleRun) -> None:
        """Never lead again while the old leader task may still act: wait for it to return."""
        while not run.task.done():
            log.warning("waiting for the previous leader task to return before contending again")
            await asyncio.wait({run.task}, timeout=10)

    # -- small helpers -----------------------------------------------------------------------

    def _start(self, fn: RoleTask | None, role: Role, term: int | None,
               acting_until: float = math.inf) -> _RoleRun | None:
        if fn is None:
            return None
        ctx = RoleContext(self._identity.instance_id, role, term=term, leader=self.leader, clock=self._clock,
                          acting_until=acting_until)
        if role is Role.LEADER:
            ctx.advance_term = lambda at_least: self._advance_term(ctx, at_least)
        return _RoleRun(fn, ctx)

    def _jittered(self, seconds: float) -> float:
        # +-10 % keeps contenders from polling in lockstep without changing the mean.
        return seconds * random.uniform(0.9, 1.1)

    def _on_signal(self, signum: int) -> None:
        assert self._stopping is not None and self._loop is not None
        if self._stopping.is_set():
            return
        log.info("received %s: stopping", signal.Signals(signum).name)
        self._stopping.set()


def _step_down_cause(reason: str, lost: bool) -> str:
    """The class of a reason to step down (observer.STEP_DOWN_CAUSES), from _hold's words."""
    if lost:
        return "lease_lost"
    for prefix, cause in (("shutting down", "shutdown"), ("no renewal within", "deadline"),
                          ("leader task failed", "task_failed"), ("leader work made no progress", "stalled")):
        if reason.startswith(prefix):
            return cause
    return "other"


class _OutageLog:
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


async def _first_of(awaitables: list[Awaitable[Any]], timeout: float | None = None) -> None:
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
