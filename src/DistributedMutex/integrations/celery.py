"""Celery beat on N replicas: each periodic task sent once per interval, by the beat that leads.

    celery -A proj beat -S DistributedMutex.integrations.celery:LeaderScheduler

on every replica. Each beat process runs the election in a thread of its own and sends due tasks
only while it leads; every message it sends carries the term (the fencing token) in its headers
(``leader_term``, with ``leader_id`` and ``leader_sent_at``). The election's settings are Celery
configuration keys (``app.conf``), or an environment variable:

    distributed_mutex_backend       an ElectionBackend, a function of no argument that returns one, or
                                    "module:name" naming either; else DISTRIBUTED_MUTEX_BACKEND
                                    ("module:name") from the environment; else ELECTION_BACKEND and its
                                    settings from the environment, as `distributed-mutex run` reads
                                    them (INSTANCE_ID naming this beat). One of them is required.
    distributed_mutex_instance_id   this beat's name in the election (default: <hostname>-<pid>)
    distributed_mutex_timing        an ElectionTiming (default: the backend's)

What it sends when (docs/celery.md says it at length):

* Only while it leads, and only before the local deadline of its lease (checked just before each
  message is sent): a beat frozen past its lease sends nothing when it wakes up.
* When it starts to lead, every entry starts afresh from that moment: an interval whose time came
  before then belonged to the previous leader (which may have sent it), so none is sent twice, and
  at most the failover time's worth of intervals is skipped. Entries scheduled with ``every()``
  are aligned on the wall clock (multiples of their period since the epoch), the same on every
  replica, so that an interval is the same interval whoever leads; a plain ``timedelta`` interval
  counts from when this beat started to lead (a crontab is aligned by nature).
* The schedule is kept in memory (beat's base Scheduler): nothing on disk to share or clash.

On the worker side, ``TermCheckedTask`` (a base class: ``@app.task(base=TermCheckedTask)``) refuses
a message whose term is older than the newest this worker process has seen (or what its
``check_term`` says: override it with a Fence for a check shared by every worker); ``leader_term``
reads the term off a task's request, for fenced writes.
"""

from __future__ import annotations

import copy
import importlib
import logging
import math
import os
import threading
import time
from datetime import timedelta
from typing import Any, cast

from DistributedMutex.backend import ElectionBackend, Identity
from DistributedMutex.errors import ConfigurationError, MissingExtraError, StaleTermError
from DistributedMutex.integrations.background import ElectionThread
from DistributedMutex.integrations.environment import ELECTION_BACKEND, election_from_environment
from DistributedMutex.mutex import DistributedMutex
from DistributedMutex.roles import LeaderContext
from DistributedMutex.timing import ElectionTiming

try:
    from celery import Task as _Task
    from celery.beat import Scheduler as _Scheduler
    from celery.exceptions import Ignore as _Ignore
    from celery.schedules import schedstate as _schedstate
    from celery.schedules import schedule as _schedule
except ImportError:  # pragma: no cover - the extra is missing
    raise MissingExtraError(__name__, "celery", "celery") from None

__all__ = ["TERM_HEADER", "LeaderScheduler", "TermCheckedTask", "every", "leader_term"]

log = logging.getLogger(__name__)

TERM_HEADER = "leader_term"
ID_HEADER = "leader_id"
SENT_AT_HEADER = "leader_sent_at"
BACKEND_SETTING = "distributed_mutex_backend"
BACKEND_ENV = "DISTRIBUTED_MUTEX_BACKEND"
FOLLOWER_POLL = 0.25  # how often a beat that does not lead looks again: it notices a new leadership this soon
STOP_TIMEOUT = 10.0  # close(): the election's stop (leader task told, lease released), bounded


class LeaderScheduler(_Scheduler):  # type: ignore[misc]  # Celery has no type hints: its classes are Any
    """A Celery beat scheduler that sends due tasks only while this beat process leads (see the module)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lock = threading.Lock()
        self._ctx: LeaderContext | None = None
        self._sending_for: LeaderContext | None = None  # the leadership the entries were restarted for
        self._election: ElectionThread | None = None
        self._failed = False  # the election ended for good: beat must exit non-zero (see close)
        super().__init__(*args, **kwargs)

    def setup_schedule(self) -> None:
        """Beat's own set-up (not called for the banner's lazy instance), then the election."""
        super().setup_schedule()
        conf = self.app.conf
        instance_id = conf.get("distributed_mutex_instance_id")
        timing = conf.get("distributed_mutex_timing")
        if timing is not None and not isinstance(timing, ElectionTiming):
            raise ConfigurationError("distributed_mutex_timing", f"must be an ElectionTiming, got {timing!r}")
        identity = Identity(instance_id) if instance_id is not None else None
        setting, named = conf.get(BACKEND_SETTING), os.environ.get(BACKEND_ENV)
        if setting is None and not named and ELECTION_BACKEND in os.environ:
            # As `distributed-mutex run` reads them: ELECTION_BACKEND and its settings, INSTANCE_ID.
            election = election_from_environment(os.environ, "distributed-mutex-celery-beat")
            backend, timing, identity = election.backend, timing or election.timing, identity or election.identity
        else:
            backend = backend_from(setting, named)
        mutex = DistributedMutex(self._lead, backend=backend, timing=timing, identity=identity)
        self._election = ElectionThread(mutex, name="beat-election")
        self._election.start()
        log.info("beat contending for leadership as %s", mutex.identity.instance_id)

    def close(self) -> None:
        """Stop leading (the lease released, so another beat takes over at once), then beat's close."""
        if self._election is not None:
            self._election.stop(STOP_TIMEOUT)
        super().close()
        if self._failed and threading.current_thread() is threading.main_thread():
            # Beat's service swallows SystemExit in its loop (and exits 0), but calls close() after
            # it: raised here, it ends `celery beat` (or `worker -B`'s beat process) with status 1,
            # so that a supervisor restarts it. Not from a thread (`worker -B` with a threaded
            # beat): the worker's shutdown would then wait forever for the service to say it stopped.
            raise SystemExit(1)

    @property
    def term(self) -> int | None:
        """The term this beat leads in, None while it does not lead (or is past its local deadline)."""
        ctx = self._active()
        return ctx.term if ctx is not None else None

    def tick(self, *args: Any, **kwargs: Any) -> float:
        failure = self._election.failure if self._election is not None else None
        if failure is not None:
            # A beat that can never lead must not look healthy: stop it (close() makes the status 1).
            log.critical("beat stops: its election ended: %s", failure)
            self._failed = True
            raise SystemExit(1)
        ctx = self._active()
        if ctx is None:
            return float(min(self.max_interval, FOLLOWER_POLL))
        if ctx is not self._sending_for:
            self._restart_entries(ctx)
        return float(super().tick(*args, **kwargs))

    def apply_async(self, entry: Any, producer: Any = None, advance: bool = True, **kwargs: Any) -> Any:
        ctx = self._active()  # asked again just before sending: the tick may have taken a while
        if ctx is None:
            log.info("not sending %s: this beat does not lead", entry.name)
            return None
        if advance:
            entry = self.reserve(entry)
        headed = copy.copy(entry)  # the schedule's own entry keeps its options as they were
        headers = dict(entry.options.get("headers") or {})
        headers.update({TERM_HEADER: ctx.term, ID_HEADER: ctx.instance_id, SENT_AT_HEADER: time.time()})
        headed.options = {**entry.options, "headers": headers}
        return super().apply_async(headed, producer=producer, advance=False, **kwargs)

    # -- leadership --------------------------------------------------------------------------------

    def _lead(self, ctx: LeaderContext) -> None:
        with self._lock:
            self._ctx = ctx
        log.info("leading (term %d): sending due tasks", ctx.term)
        try:
            while ctx.sleep(3600):  # woken at once when the role ends (or at the local deadline)
                pass
        finally:
            with self._lock:
                self._ctx = None
            log.info("no longer leading (term %d): not sending", ctx.term)

    def _active(self) -> LeaderContext | None:
        with self._lock:
            ctx = self._ctx
        return ctx if ctx is not None and ctx.is_active() else None

    def _restart_entries(self, ctx: LeaderContext) -> None:
        """Every entry counts from now: what fell due before this beat led was the previous leader's."""
        now = self.app.now()
        for entry in self.schedule.values():
            entry.last_run_at = now
        self._heap = None  # rebuilt from the entries at the next tick
        self._sending_for = ctx
        log.info("entries restarted from now for term %d", ctx.term)


def backend_from(setting: object, environment: str | None) -> ElectionBackend:
    """The backend from the Celery setting (an ElectionBackend, a factory, "module:name") or else the
    environment variable ("module:name"); a one-line ConfigurationError naming the one at fault."""
    name, value = (BACKEND_SETTING, setting) if setting is not None else (BACKEND_ENV, environment)
    if value is None or value == "":
        raise ConfigurationError(BACKEND_SETTING, f"is not set (nor {BACKEND_ENV}, nor {ELECTION_BACKEND}): give "
                                                  "the election backend, an ElectionBackend or \"module:name\" of "
                                                  "one or of a function making one")
    if isinstance(value, str):
        module, _, attribute = value.partition(":")
        if not module or not attribute:
            raise ConfigurationError(name, f"must be \"module:name\", got {value!r}")
        try:
            value = getattr(importlib.import_module(module), attribute)
        except (ImportError, AttributeError) as exc:
            raise ConfigurationError(name, f"cannot load {value!r}: {exc}") from None
    if callable(value) and not _is_backend(value):
        value = value()
    if not _is_backend(value):
        raise ConfigurationError(name, f"must give an ElectionBackend, got {type(value).__name__}")
    return cast(ElectionBackend, value)


def _is_backend(value: object) -> bool:
    return all(callable(getattr(value, method, None)) for method in ("acquire", "renew", "release"))


class every(_schedule):  # type: ignore[misc]  # noqa: N801 - named as Celery's own schedule, crontab, solar
    """An interval aligned on the wall clock: due at every multiple of ``run_every`` since the epoch,
    so that replicas agree on which interval is which (``every(60)`` is due at each minute's start)."""

    def __init__(self, run_every: float | timedelta, *args: Any, **kwargs: Any) -> None:
        seconds = run_every.total_seconds() if isinstance(run_every, timedelta) else run_every
        if not isinstance(seconds, (int, float)) or not seconds > 0:
            raise ConfigurationError("run_every", f"must be a positive number of seconds, got {run_every!r}")
        super().__init__(timedelta(seconds=seconds), *args, **kwargs)

    def _next_after(self, moment: float) -> float:
        period = float(self.seconds)
        return (math.floor(moment / period) + 1) * period

    def remaining_estimate(self, last_run_at: Any) -> timedelta:
        last = self.maybe_make_aware(last_run_at).timestamp()
        return timedelta(seconds=self._next_after(last) - self.maybe_make_aware(self.now()).timestamp())

    def is_due(self, last_run_at: Any) -> Any:
        remaining = self.remaining_estimate(last_run_at).total_seconds()
        if remaining > 0:
            return _schedstate(is_due=False, next=remaining)
        now = self.maybe_make_aware(self.now()).timestamp()
        return _schedstate(is_due=True, next=self._next_after(now) - now)

    def __repr__(self) -> str:
        return f"<every {self.seconds:g} s, aligned>"


def leader_term(request: Any) -> int | None:
    """The term a task's message was sent under (``self.request`` of a bound task), None if it has none."""
    term = getattr(request, TERM_HEADER, None)
    if term is None:
        term = (getattr(request, "headers", None) or {}).get(TERM_HEADER)
    return term if isinstance(term, int) and not isinstance(term, bool) else None


class TermCheckedTask(_Task):  # type: ignore[misc]
    """A task base class that runs a message only under a term no older than the newest seen.

    ``check_term(term)`` decides (StaleTermError: refused): by default, the newest term this worker
    process has seen for this task. Each worker process only knows what it has seen: for a check
    every worker shares, override it with a Fence (``Fence(connection, name).register(term)``). A
    refused message is not run and is ignored (logged; the result is not stored). A message without
    the header (sent by hand, not by LeaderScheduler) is refused too, unless ``allow_without_term``.
    """

    allow_without_term = False
    _newest: dict[str, int] = {}  # noqa: RUF012 - one per worker process, shared by every task of the class
    _newest_lock = threading.Lock()

    def check_term(self, term: int) -> None:
        with self._newest_lock:
            newest = self._newest.get(self.name, 0)
            if term < newest:
                raise StaleTermError(term, newest, f"sent under term {term}, but term {newest} was seen already")
            self._newest[self.name] = term

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        term = leader_term(self.request)
        if term is None:
            if not self.allow_without_term:
                log.warning("task %s (%s) refused: its message carries no %s header", self.name,
                            self.request.id, TERM_HEADER)
                raise _Ignore()
        else:
            try:
                self.check_term(term)
            except StaleTermError as exc:
                log.warning("task %s (%s) refused: %s", self.name, self.request.id, exc)
                raise _Ignore() from None
        return super().__call__(*args, **kwargs)
