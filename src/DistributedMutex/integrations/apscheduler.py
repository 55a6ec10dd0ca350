"""APScheduler 3 on N replicas: the jobs of a scheduler fire on the leader only.

    from apscheduler.schedulers.background import BackgroundScheduler
    from DistributedMutex.integrations.apscheduler import LeaderScheduler, current_term

    def report() -> None:
        with fence.transaction(current_term()) as cursor:   # the term is the fencing token
            cursor.execute("INSERT INTO reports ...")

    scheduler = BackgroundScheduler()
    scheduler.add_job(report, "interval", seconds=60)
    LeaderScheduler(scheduler, backend=backend).run()       # until SIGTERM / SIGINT

How it runs (docs/apscheduler.md says it at length):

* The scheduler is started *paused* on every replica (``start(paused=True)``) and resumed only while
  this instance leads. A paused APScheduler 3 scheduler does not process jobs at all; on ``resume()``
  it treats every job's missed run times as it documents: one older than the job's
  ``misfire_grace_time`` is skipped (EVENT_JOB_MISSED), and with ``coalesce`` (the default) a job's
  missed runs are run once. Run times that passed *before this instance led* are another matter: the
  previous leader may have run them, and no replica can tell. By default
  (``missed_before_leading="skip"``) each job is moved to its first run time from the moment this
  instance leads, so that no interval runs twice across a handover (at most the failover time's
  worth of intervals is missed), and (``align_intervals=True``, the default) an interval job runs
  on the multiples of its interval since the epoch, the same grid on every replica however each
  added it, so that the next leader's first run comes at least an interval after the previous
  leader's last one; ``"apscheduler"`` leaves them to the paused scheduler's own misfire
  rules (one catch-up run per job within its grace time, which may repeat the previous leader's
  last run). With a job store shared by the replicas (SQLAlchemyJobStore), the next leader sees
  which run times the previous one has taken: there ``"apscheduler"`` repeats none (but one whose
  leader crashed between starting it and recording it) and catches up the rest by the misfire rules.
* When leadership ends (shutdown, a lost lease, the local deadline), the scheduler is paused at once:
  no run starts after that. Runs already going are **allowed to finish** (a thread cannot be cancelled):
  the leader task waits for them, so the lease is released only once they are done (when they
  outlive the lease, or on a shutdown ``shutdown_grace``, it is not released: it expires by itself,
  and this instance contends again only after they end). From the moment leadership ends,
  ``current_term()`` raises LeaseLostError, and past the local deadline too even before the election
  loop has noticed: a job that asks for the term before each write (or writes through a Fence)
  cannot write under a term that is over.
* One LeaderScheduler per process is the expected use: ``current_term()`` answers for the one
  started last.

The scheduler must run its jobs in threads of this process (BackgroundScheduler, the default thread
pool): a BlockingScheduler is refused (its ``start()`` would never return; ``run()`` blocks instead),
and a process pool executor's jobs cannot see the term.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import threading
from datetime import datetime
from types import FrameType
from typing import Any, Literal, Protocol, cast

from DistributedMutex.backend import ElectionBackend, Identity
from DistributedMutex.errors import ConfigurationError, LeaseLostError, MissingExtraError
from DistributedMutex.integrations.background import ElectionThread
from DistributedMutex.integrations.environment import ELECTION_BACKEND, election_from_environment
from DistributedMutex.mutex import DistributedMutex
from DistributedMutex.roles import LeaderContext
from DistributedMutex.timing import ElectionTiming

try:
    from apscheduler import events as _events
    from apscheduler.schedulers.background import BackgroundScheduler as _BackgroundScheduler
    from apscheduler.schedulers.base import BaseScheduler as _BaseScheduler
    from apscheduler.schedulers.blocking import BlockingScheduler as _BlockingScheduler
    from apscheduler.triggers.interval import IntervalTrigger as _IntervalTrigger
except ImportError:  # pragma: no cover - the extra is missing
    raise MissingExtraError(__name__, "apscheduler", "apscheduler") from None

__all__ = ["LeaderScheduler", "MissedPolicy", "current_term"]

# What happens to the run times that passed before this instance led: "skip" (they were the previous
# leader's), "apscheduler" (the paused scheduler's misfire_grace_time and coalesce decide).
MissedPolicy = Literal["skip", "apscheduler"]

log = logging.getLogger(__name__)

_STARTED = _events.EVENT_JOB_SUBMITTED
_ENDED = _events.EVENT_JOB_EXECUTED | _events.EVENT_JOB_ERROR | _events.EVENT_JOB_MISSED
_JOBS_WAIT_LOG_EVERY = 5.0  # seconds between the lines saying which runs a step-down still waits for
_STOP_TIMEOUT = 30.0  # stop(): the leader task's wait for running jobs is bounded by the lease, this by far


class Scheduler(Protocol):
    """What LeaderScheduler uses of an APScheduler 3 scheduler (which has no type hints)."""

    def start(self, paused: bool = ...) -> None: ...

    def pause(self) -> None: ...

    def resume(self) -> None: ...

    def shutdown(self, wait: bool = ...) -> None: ...

    def add_listener(self, callback: Any, mask: int = ...) -> None: ...

    def remove_listener(self, callback: Any) -> None: ...

    def get_jobs(self) -> list[Any]: ...


class _JobEvent(Protocol):
    code: int


class _Running:
    """How many job runs are going, counted off the scheduler's events: a submission of N run times
    adds N, each run time executed, failed or missed takes one away. The two can arrive in either
    order (a quick job ends before its submission event is dispatched), hence a signed count."""

    def __init__(self) -> None:
        self._count = 0
        self._changed = threading.Condition()

    def on_event(self, event: _JobEvent) -> None:
        with self._changed:
            if event.code & _STARTED:
                self._count += len(cast("list[object]", getattr(event, "scheduled_run_times", [None])))
            elif event.code & _ENDED:
                self._count -= 1
            self._changed.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        with self._changed:
            return self._changed.wait_for(lambda: self._count <= 0, timeout)

    @property
    def count(self) -> int:
        with self._changed:
            return max(self._count, 0)


class LeaderScheduler:
    """Runs ``scheduler`` (an APScheduler 3 BackgroundScheduler with its jobs added) so that its jobs
    fire only while this instance leads; ``backend``, ``identity``, ``timing``: as DistributedMutex's.
    Without ``backend``: ELECTION_BACKEND and its settings from the environment, as ``distributed-mutex
    run`` reads them (docs/run.md), INSTANCE_ID naming this instance.

    ``run()`` blocks until SIGTERM or SIGINT; or ``start()`` and later ``stop()`` (also a context
    manager). ``term`` is the term this instance leads in, None otherwise; ``current_term()`` the
    same for a job, raising LeaseLostError when it does not lead.

    ``missed_before_leading``: "skip" (run times that passed before this instance led are not run)
    or "apscheduler" (the paused scheduler's misfire rules decide); ``align_intervals`` (with
    "skip"): interval jobs run on the multiples of their interval since the epoch, the same on
    every replica. ``shutdown_grace``: how long a shutdown waits for running jobs (at most the lease).
    """

    def __init__(self, scheduler: object, *, backend: ElectionBackend | None = None, identity: Identity | None = None,
                 timing: ElectionTiming | None = None, shutdown_grace: float = 5.0,
                 missed_before_leading: MissedPolicy = "skip", align_intervals: bool = True) -> None:
        if not isinstance(scheduler, _BaseScheduler):
            raise ConfigurationError("scheduler", f"must be an APScheduler 3 scheduler, got {type(scheduler).__name__}")
        # (a BackgroundScheduler is a BlockingScheduler run in a thread of its own)
        if isinstance(scheduler, _BlockingScheduler) and not isinstance(scheduler, _BackgroundScheduler):
            raise ConfigurationError("scheduler", "a BlockingScheduler never returns from start(): give a "
                                                  "BackgroundScheduler (LeaderScheduler.run() blocks instead)")
        if getattr(scheduler, "running", False):
            raise ConfigurationError("scheduler", "is already started: LeaderScheduler starts it, paused")
        if missed_before_leading not in ("skip", "apscheduler"):
            raise ConfigurationError("missed_before_leading",
                                     f"must be 'skip' or 'apscheduler', got {missed_before_leading!r}")
        self._scheduler = cast(Scheduler, scheduler)
        self._missed = missed_before_leading
        if not isinstance(align_intervals, bool):
            raise ConfigurationError("align_intervals", f"must be True or False, got {align_intervals!r}")
        self._align = align_intervals
        self._running = _Running()
        self._ctx: LeaderContext | None = None
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        if backend is None:  # from ELECTION_BACKEND and its settings, as `distributed-mutex run` reads them
            if ELECTION_BACKEND not in os.environ:
                raise ConfigurationError("backend", f"not given, and {ELECTION_BACKEND} is not set: give an election "
                                                    f"backend, or set {ELECTION_BACKEND} and its settings")
            election = election_from_environment(os.environ, "distributed-mutex-apscheduler")
            backend, timing = election.backend, timing or election.timing
            identity = identity or election.identity
        self._mutex = DistributedMutex(self._lead, backend=backend, identity=identity, timing=timing,
                                       shutdown_grace=shutdown_grace)
        self._election = ElectionThread(self._mutex, name="leader-scheduler-election")

    # -- running ---------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the scheduler paused and contend for leadership in the background."""
        global _current
        self._scheduler.add_listener(self._running.on_event, _STARTED | _ENDED)
        self._scheduler.start(paused=True)
        _current = self
        self._election.start()
        log.info("scheduler started paused; contending for leadership as %s", self._mutex.identity.instance_id)

    def stop(self, timeout: float = _STOP_TIMEOUT) -> None:
        """Stop leading (the scheduler paused, running jobs finished, the lease released), then shut the
        scheduler down; a second call does nothing."""
        self._election.stop(timeout)
        if getattr(self._scheduler, "running", False):
            self._scheduler.shutdown(wait=False)
        self._stopped.set()

    def run(self) -> None:
        """Start, block until SIGTERM or SIGINT (or ``stop()`` from another thread), then stop."""
        def on_signal(signum: int, _frame: FrameType | None) -> None:
            log.info("received %s: stopping", signal.Signals(signum).name)
            self._stopped.set()

        previous = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            self.start()
            while not self._stopped.wait(1.0):  # a timeout, so that the main thread runs the handlers
                if self._election.failure is not None:
                    raise self._election.failure
        finally:
            self.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def __enter__(self) -> LeaderScheduler:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- who leads ---------------------------------------------------------------------------------

    @property
    def term(self) -> int | None:
        """The term this instance leads in (its fencing token), None while it does not lead."""
        with self._lock:
            ctx = self._ctx
        return ctx.term if ctx is not None and ctx.is_active() else None

    def current_term(self) -> int:
        """The term to write under; LeaseLostError when this instance does not lead (any more)."""
        term = self.term
        if term is None:
            raise LeaseLostError("this instance does not lead: a job must not act")
        return term

    @property
    def running_jobs(self) -> int:
        return self._running.count

    # -- the leader task ---------------------------------------------------------------------------

    def _lead(self, ctx: LeaderContext) -> None:
        with self._lock:
            self._ctx = ctx
        if self._missed == "skip":
            self._start_jobs_afresh()
        self._scheduler.resume()
        log.info("leading (term %d): scheduler resumed", ctx.term)
        try:
            while ctx.sleep(3600):  # woken at once when the role ends (or at the local deadline)
                pass
        finally:
            # First no new run, then wait for the running ones: the lease is released only after.
            self._scheduler.pause()
            with self._lock:
                self._ctx = None
            log.info("no longer leading (term %d): scheduler paused", ctx.term)
            while not self._running.wait_idle(_JOBS_WAIT_LOG_EVERY):
                log.warning("waiting for %d running job(s) to finish before giving the lease up", self._running.count)

    def _start_jobs_afresh(self) -> None:
        """Move every job to its first run time from now on (``missed_before_leading="skip"``).

        The run times that passed while another instance led (or nobody did) are not run: the
        previous leader may have run them, and this one cannot tell, so running them on resume (as a
        paused scheduler's misfire handling would, within misfire_grace_time) could run one interval
        twice. A run time that passes while this instance leads is the scheduler's, misfires and all.

        With ``align_intervals``, an interval job's next run is the first multiple of its interval
        since the Unix epoch (not before its start_date): every replica then runs it on the same
        grid, so that the next leader's first run comes at least one interval after the previous
        leader's last one, whenever each replica added the job."""
        timezone = getattr(self._scheduler, "timezone", None)
        now = datetime.now(timezone)
        for job in self._scheduler.get_jobs():
            due = cast("datetime | None", job.next_run_time)
            if due is None:  # a paused job: the user's to resume
                continue
            trigger = job.trigger
            if self._align and isinstance(trigger, _IntervalTrigger):
                upcoming: datetime | None = _on_the_grid(trigger, now)
                end = cast("datetime | None", trigger.end_date)
                if upcoming is not None and end is not None and upcoming > end:
                    upcoming = None
            elif due < now:
                upcoming = cast("datetime | None", trigger.get_next_fire_time(None, now))
            else:
                continue
            if upcoming is None or upcoming < now or upcoming == due:
                continue
            if due < now:
                log.info("job %s: run time %s passed before this instance led; next run at %s", job.id, due, upcoming)
            job.modify(next_run_time=upcoming)


def _on_the_grid(trigger: Any, now: datetime) -> datetime:
    """The first multiple of an interval trigger's interval since the epoch, from now (or its start_date)."""
    period = float(trigger.interval_length)
    earliest = max(now, cast(datetime, trigger.start_date))
    return datetime.fromtimestamp(math.ceil(earliest.timestamp() / period) * period, now.tzinfo)


_current: LeaderScheduler | None = None


def current_term() -> int:
    """The term of this process's LeaderScheduler (the one started last), for a job to write under;
    LeaseLostError when it does not lead, ConfigurationError when none was started."""
    if _current is None:
        raise ConfigurationError("current_term", "no LeaderScheduler was started in this process")
    return _current.current_term()
