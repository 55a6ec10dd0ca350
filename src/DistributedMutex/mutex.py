"""DistributedMutex: contend for a lease, lead while it is provably held, work otherwise.

The loop, top to bottom:

    while not stopped:
        run the worker task (restarted if it fails) and try to take the lease every acquire interval
        got it: stop the worker task, lead (leadership.py): run the leader task, renew every renew
        interval until shutdown, a lost lease, the local deadline without a renewal, or leader work
        that failed or reported no progress for the stall timeout; stop the leader task (bounded),
        then release the lease
        back to contending, forever: transient errors never end the loop

The modules: roles.py (the tasks' contexts, how a task runs), leadership.py (one leadership and its
safety argument), calls.py (storage calls off the event loop), observer.py (metrics hooks).
"""

from __future__ import annotations

import asyncio
import logging
import random
import signal
import time
from collections.abc import Callable, Coroutine
from typing import Any, Literal

from DistributedMutex.arguments import check_arguments
from DistributedMutex.backend import WATCHED_RECHECK, ElectionBackend, Held, Identity, LeaderRecord, Lease
from DistributedMutex.calls import OutageLog, StorageCalls, first_of
from DistributedMutex.errors import ConfigurationError, LeaseLostError, StorageRejectedError, StorageUnavailableError
from DistributedMutex.journal import LeadershipJournal
from DistributedMutex.leadership import Election, Leadership, StepDown
from DistributedMutex.observer import ElectionObserver, GuardedObserver, ObservedBackend, StepDownReason
from DistributedMutex.roles import (
    Backoff,
    LeaderContext,
    LeaderTask,
    Role,
    RoleContext,
    RoleRun,
    RoleTask,
    WorkerContext,
    WorkerTask,
)
from DistributedMutex.timing import ElectionTiming, timing_for

__all__ = ["DistributedMutex", "LeaderContext", "Role", "RoleContext", "RoleTask", "StepDownReason", "WorkerContext"]

log = logging.getLogger(__name__)
TaskFailurePolicy = Literal["restart", "stop"]


class DistributedMutex:
    """Runs ``leader_task`` on exactly one instance and ``worker_task`` on all the others.

    A task is a plain function, run in a thread of its own, or an ``async`` function, run on the
    loop; the leader task gets a LeaderContext (``ctx.term`` is the fencing token), the worker task
    a WorkerContext (``ctx.leader``: the latest leader seen).

    How a task ends: when its role ends (shutdown, a lost lease, the local deadline), a plain task
    sees ``ctx.sleep()`` return False (``while ctx.sleep(n): ...``) and the loop waits for it to
    return, bounded; an async task is **cancelled**: code after ``while await ctx.asleep(n): ...``
    never runs, so clean up in ``try/finally``::

        async def lead(ctx: LeaderContext) -> None:
            conn = await connect()
            try:
                while await ctx.asleep(5):
                    await conn.execute("UPDATE jobs SET ... WHERE term <= ?", ctx.term)
            finally:
                await conn.close()

    The lease is released only once the leader task has finished: if it outlives the lease, the
    lease expires by itself and this instance contends again only after the task has returned.

    When a task raises (``on_task_failure``):

    * ``"restart"`` (the default): a failed worker task is logged and started again after a delay,
      1 s doubled for each failure in a row up to 60 s; a failed leader task is logged, this
      instance steps down (releases the lease) and contends again only after the same delay (at
      least two acquire intervals), so that a healthy instance takes over meanwhile.
    * ``"stop"``: the leader steps down all the same, then ``run()`` ends and raises the task's
      exception (so does a failed worker task): for a supervisor (systemd, Kubernetes) to restart
      the process.

    A leader task that *returns* keeps the lease until shutdown (nothing is restarted); a worker
    task that returns is not restarted either. A leader task that reports no progress
    (``ctx.report_progress()``) for ``stall_timeout`` steps down as a failed one does, whatever
    the policy: it may be wedged where cancelling cannot reach it.

    ``clock``: the monotonic clock deadlines are measured on; by default ``time.monotonic``, or the
    VirtualClock of the event loop when run by ``DistributedMutex.testing.VirtualClock.run``.
    """

    def __init__(
        self,
        leader_task: LeaderTask,
        worker_task: WorkerTask | None = None,
        *,
        backend: ElectionBackend,
        identity: Identity | None = None,
        timing: ElectionTiming | None = None,
        clock: Callable[[], float] | None = None,
        shutdown_grace: float = 1.5,
        release_timeout: float = 1.0,
        stall_timeout: float | None = None,
        journal: LeadershipJournal | None = None,
        observer: ElectionObserver | None = None,
        on_task_failure: TaskFailurePolicy = "restart",
    ) -> None:
        check_arguments(leader_task=leader_task, worker_task=worker_task, backend=backend, identity=identity,
                        clock=clock, shutdown_grace=shutdown_grace, release_timeout=release_timeout,
                        stall_timeout=stall_timeout, journal=journal, observer=observer)
        self._leader_task = leader_task
        self._worker_task = worker_task
        # Metrics and health checks hook in here (see observer.py); none: nothing is measured.
        self._observer = GuardedObserver(observer) if observer is not None else ElectionObserver()
        self._backend = ObservedBackend(backend, self._observer) if observer is not None else backend
        self._identity = identity or Identity.default()
        self._timing = timing_for(backend, timing)  # refuses a timing the backend cannot honour
        if on_task_failure not in ("restart", "stop"):
            raise ConfigurationError("on_task_failure", f"must be 'restart' or 'stop', got {on_task_failure!r}")
        self._on_task_failure = on_task_failure
        self._given_clock = clock
        self._clock: Callable[[], float] = clock or time.monotonic
        self._shutdown_grace = shutdown_grace
        self._stall_timeout = stall_timeout
        self._journal = journal
        self._calls = StorageCalls(self._backend, release_timeout)
        # After giving up leadership for a failing or stalled task, let a healthy instance win.
        self._yield_for = 0.0
        self._leader_backoff, self._worker_backoff = Backoff(), Backoff()
        self._failure: BaseException | None = None  # a task's error that ends run() ("stop")
        self._stopping: asyncio.Event | None = None
        self._wake: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seen_leader: tuple[str | None, int] | None = None
        self._outage = OutageLog()
        self._leadership: Leadership | None = None
        self._worker: RoleRun | None = None
        self.leader: LeaderRecord | None = None  # the latest leader seen while contending

    # -- public surface ----------------------------------------------------------------------

    def run(self) -> None:
        """Block until SIGINT or SIGTERM; then stop leader work, release the lease and return."""
        asyncio.run(self.run_async(handle_signals=True))

    async def run_async(self, *, handle_signals: bool = False) -> None:
        """Run the election on the running event loop until ``stop()`` (or SIGINT/SIGTERM with
        ``handle_signals``). Raises what ends it for good: StorageRejectedError, or under
        ``on_task_failure="stop"`` the exception of the task that failed.

        Cancelled (``task.cancel()``, ``asyncio.timeout``), it stops as ``stop()`` does (the tasks
        stopped, bounded; the lease released), and only then raises the CancelledError."""
        self._loop = loop = asyncio.get_running_loop()
        self._clock = self._clock_for(loop)
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._failure = None
        election = Election(calls=self._calls, identity=self._identity, timing=self._timing, clock=self._clock,
                            observer=self._observer, stopping=self._stopping, wake=self._wake, journal=self._journal,
                            shutdown_grace=self._shutdown_grace, stall_timeout=self._stall_timeout)
        self._backend.watch(self._on_wake)
        if handle_signals:
            for signum in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(signum, self._on_signal, signum)
        self._observer.election_started()
        try:
            await self._stop_when_cancelled(self._elect(election))
        finally:
            self._calls.close()
            self._observer.election_stopped()
            if handle_signals:
                for signum in (signal.SIGINT, signal.SIGTERM):
                    loop.remove_signal_handler(signum)
        failure = self._take_failure()  # set by a task's failure under "stop", while the loop ran
        if failure is not None:
            raise failure

    async def _elect(self, election: Election) -> None:
        assert self._stopping is not None
        while not self._stopping.is_set():
            lease = await self._contend_while_working()
            if lease is None:
                break
            await self._lead(Leadership(election, lease))

    async def _stop_when_cancelled(self, election: Coroutine[Any, Any, None]) -> None:
        """Run the election loop as a task of its own, which a cancellation of run_async does not
        reach: cancelled, stop it as stop() does (bounded), then raise the CancelledError. A second
        cancellation does not cut that short: leader work would go on with the lease unreleased."""
        assert self._stopping is not None
        body = asyncio.ensure_future(election)
        cancelled: asyncio.CancelledError | None = None
        while not body.done():
            try:
                await asyncio.wait({body})
            except asyncio.CancelledError as exc:
                if cancelled is None:
                    log.info("run_async cancelled: stopping")
                cancelled = exc
                self._stopping.set()
        if cancelled is not None:
            if not body.cancelled() and body.exception() is not None:
                log.error("the election loop failed while stopping: %r", body.exception())
            raise cancelled
        body.result()

    def _take_failure(self) -> BaseException | None:
        failure, self._failure = self._failure, None
        return failure

    def stop(self) -> None:
        """Ask the loop to stop; safe to call from any thread."""
        self._set_in_loop(self._stopping)

    @property
    def identity(self) -> Identity:
        return self._identity

    @property
    def term(self) -> int | None:
        """The term this instance leads in; None while it does not act as leader."""
        leadership = self._leadership
        return leadership.term if leadership is not None else None

    @property
    def role(self) -> Role:
        return Role.LEADER if self.term is not None else Role.WORKER

    # -- contending --------------------------------------------------------------------------

    async def _contend_while_working(self) -> Lease | None:
        supervisor = asyncio.ensure_future(self._keep_worker_running()) if self._worker_task is not None else None
        try:
            return await self._contend()
        finally:
            if supervisor is not None:
                supervisor.cancel()
                await asyncio.wait({supervisor})
                if not supervisor.cancelled() and supervisor.exception() is not None:
                    log.error("the worker task's supervisor failed: %r", supervisor.exception())
            worker, self._worker = self._worker, None
            if worker is not None and not await worker.stop(self._shutdown_grace):
                log.warning("worker task did not stop within %.1f s; going on", self._shutdown_grace)

    async def _keep_worker_running(self) -> None:
        """Run the worker task while contending; start it again when it fails (on_task_failure)."""
        assert self._worker_task is not None
        while True:
            ctx = WorkerContext(self._identity.instance_id, leader=self.leader, clock=self._clock)
            run = self._worker = RoleRun(self._worker_task, ctx)
            await asyncio.wait({run.task})
            failure = run.failure()
            if failure is None:
                log.info("worker task returned; not starting it again")
                return
            if self._on_task_failure == "stop":
                self._end_with(failure, "worker")
                return
            delay = self._worker_backoff.next_delay(run.ran_for())
            log.warning("starting the worker task again in %g s (failure %d in a row)",
                        delay, self._worker_backoff.failures)
            await asyncio.sleep(delay)

    async def _contend(self) -> Lease | None:
        assert self._stopping is not None and self._wake is not None
        if self._yield_for > 0:
            await first_of([asyncio.sleep(self._yield_for), self._stopping.wait()])
            self._yield_for = 0.0
        while not self._stopping.is_set():
            if not await self._calls.drain(self._stopping):
                return None
            self._wake.clear()  # a change from now on wakes the next wait below
            interval = self._timing.acquire_interval
            sent = self._clock()
            attempt = self._calls.start(self._backend.acquire, self._identity, sent, name="acquire")
            if not attempt.done():  # done already: the backend answered at once (backend.AT_ONCE)
                await first_of([attempt, self._stopping.wait()])
            if self._stopping.is_set():
                await self._calls.give_back_if_acquired(attempt)
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
                self._observe(result)
                if result.watched:
                    # The backend wakes us when the leader may have changed: no polling meanwhile,
                    # only a slow check in case a notification is lost.
                    interval = max(self._timing.acquire_interval, WATCHED_RECHECK)
            await first_of([asyncio.sleep(self._jittered(interval)), self._stopping.wait(), self._wake.wait()])
        return None

    def _observe(self, held: Held) -> None:
        leader = held.leader
        self.leader = leader
        if self._worker is not None:
            self._worker.ctx.leader = leader
        if leader is None or leader.instance_id is None:
            return
        seen = (leader.instance_id, leader.term)
        if seen != self._seen_leader:
            self._seen_leader = seen
            # The observer first: whoever reads the log line finds the metrics already saying so.
            self._observer.leader_seen(leader.instance_id, leader.term)
            log.info("leader is %s (term %d)", leader.instance_id, leader.term)

    # -- leading -----------------------------------------------------------------------------

    async def _lead(self, leadership: Leadership) -> None:
        self._leadership = leadership
        try:
            step = await leadership.lead(self._leader_task, self.leader)
        finally:
            self._leadership = None
        if leadership.acted_in is not None:
            # Our own record, read while contending again, is not news.
            self._seen_leader = (self._identity.instance_id, leadership.acted_in)
        if step is not None and leadership.run is not None:
            self._after_step_down(step, leadership.run)

    def _after_step_down(self, step: StepDown, run: RoleRun) -> None:
        """The failure policy, for leader work that failed or stalled."""
        if step.reason not in (StepDownReason.TASK_FAILED, StepDownReason.STALLED):
            self._leader_backoff.reset()
            return
        failure = run.failure()
        if failure is not None and self._on_task_failure == "stop":
            self._end_with(failure, "leader")
            return
        delay = self._leader_backoff.next_delay(run.ran_for())
        self._yield_for = max(delay, 2 * self._timing.acquire_interval)
        log.warning("leader work failed (%d in a row): contending again in %g s, so that a healthy instance "
                    "can lead meanwhile", self._leader_backoff.failures, self._yield_for)

    # -- small helpers -----------------------------------------------------------------------

    def _end_with(self, failure: BaseException, role: str) -> None:
        """on_task_failure="stop": end run() with the task's error."""
        assert self._stopping is not None
        log.error("%s task failed: ending the election (on_task_failure='stop')", role)
        if self._failure is None:
            self._failure = failure
        self._stopping.set()

    def _clock_for(self, loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
        """The clock deadlines run on: the one given, or the event loop's own virtual clock
        (DistributedMutex.testing), whose waits the loop's timeouts follow."""
        virtual: Callable[[], float] | None = getattr(loop, "virtual_clock", None)
        if virtual is None:
            return self._given_clock or time.monotonic
        if self._given_clock is not None and self._given_clock is not virtual:
            raise ConfigurationError("clock", "the event loop runs on a VirtualClock, and the loop's waits follow "
                                              "it: pass that clock (or none) to DistributedMutex")
        return virtual

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

    def _jittered(self, seconds: float) -> float:
        # +-10 % keeps contenders from polling in lockstep without changing the mean.
        return seconds * random.uniform(0.9, 1.1)

    def _on_signal(self, signum: int) -> None:
        assert self._stopping is not None
        if self._stopping.is_set():
            return
        log.info("received %s: stopping", signal.Signals(signum).name)
        self._stopping.set()

