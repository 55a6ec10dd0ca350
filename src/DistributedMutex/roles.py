"""What a leader or worker task is given, and how the election loop runs one.

    RoleContext     what every task gets: ``is_active()``, ``sleep()`` / ``asleep()``, ``leader``
    LeaderContext   a leader task's: ``term`` (an int) is the fencing token; ``advance_term()``
                    (``advance_term_blocking()`` in a plain task)
    WorkerContext   a worker task's (``term`` is None)
    RoleRun         one task in flight: an async task is cancelled, a plain one asked to return
    Backoff         the delays before a task that keeps failing is started again

How a task ends, plain or async, reads the same:

    def lead(ctx: LeaderContext) -> None:          async def lead(ctx: LeaderContext) -> None:
        conn = connect()                               conn = await connect()
        try:                                           try:
            while ctx.sleep(5):                            while await ctx.asleep(5):
                write(conn, ctx.term)                          await write(conn, ctx.term)
        finally:                                       finally:
            conn.close()                                   await conn.close()

A plain task runs in a thread of its own: when the role ends, ``ctx.sleep`` returns False at once
and the loop waits (bounded) for the function to return. Past the local deadline, ``sleep`` and
``asleep`` never answer True: they wait for the loop's word (a renewal in flight moves the deadline
on; otherwise the loop ends the role), and answer False if none comes within ``word_within``.
An async task is *cancelled*: the CancelledError comes out of whatever it awaits, so code after
its ``while`` never runs, and only a ``finally`` (or ``except asyncio.CancelledError``, re-raised)
can clean up.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, runtime_checkable

from DistributedMutex.backend import LeaderRecord
from DistributedMutex.errors import LeaseLostError, StorageUnavailableError
from DistributedMutex.threads import run_in_daemon_thread

log = logging.getLogger("DistributedMutex.mutex")  # the loop's logger: one name for the loop's lines


class Role(Enum):
    WORKER = "worker"
    LEADER = "leader"


@runtime_checkable
class WaitingClock(Protocol):
    """A clock that can also make a thread wait in its own time (DistributedMutex.testing's
    VirtualClock): ``ctx.sleep`` then sleeps in that time, not in real seconds."""

    def __call__(self) -> float: ...

    def wait(self, event: threading.Event, timeout: float | None = None) -> bool: ...


class _RoleEnd(threading.Event):
    """``ctx.ended``: a threading.Event whose ``set()`` also wakes the sleeps that wait, past the
    local deadline, for the loop's word."""

    def __init__(self) -> None:
        super().__init__()
        self.on_set: Callable[[], None] | None = None

    def set(self) -> None:
        super().set()
        if self.on_set is not None:
            self.on_set()


@dataclass
class RoleContext:
    """What a task is given; ``LeaderContext`` and ``WorkerContext`` are what the loop hands out.

    ``term`` is the fencing token while leading (None for workers); ``leader`` the latest leader
    a worker has seen. ``acting_until`` is a leader's local deadline on ``clock``, moved on by
    every renewal: ``is_active()`` checks it itself, so work that asks before each action stops at
    the deadline even before the election loop has noticed it (or when the process was frozen
    past it).

    ``word_within``: how long past the local deadline ``sleep``/``asleep`` wait for the loop's
    word before they answer False (1 s here; under an election loop, the acting window: by then
    no renewal in flight can move the deadline past the present any more).
    """

    instance_id: str
    role: Role
    term: int | None = None
    leader: LeaderRecord | None = None
    ended: threading.Event = field(default_factory=_RoleEnd, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    acting_until: float = math.inf
    last_progress: float = field(default=0.0, repr=False)
    word_within: float = field(default=1.0, init=False, repr=False)
    # Told when the loop's word comes (the deadline moved, the role ended): sleeps past the deadline.
    _listeners: set[Callable[[], None]] = field(default_factory=set, init=False, repr=False, compare=False)
    _listeners_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.last_progress = self.clock()
        if isinstance(self.ended, _RoleEnd):
            self.ended.on_set = self._tell

    def __setattr__(self, name: str, value: Any) -> None:
        super().__setattr__(name, value)
        if name == "acting_until":  # a renewal moved the deadline: that is the loop's word too
            self._tell()

    def report_progress(self) -> None:
        """Say the work is alive. A leader that stays silent for the stall timeout steps down:
        renewing the lease proves the process is alive, not that its leader work is."""
        self.last_progress = self.clock()

    def is_active(self) -> bool:
        """True while this role lasts: for a leader, while it may still act as leader."""
        return not self.ended.is_set() and self.clock() < self.acting_until

    def sleep(self, seconds: float) -> bool:
        """Sleep in a plain (thread) task, waking at once when the role ends; then whether the role
        goes on: ``while ctx.sleep(n): ...`` runs until the role ends, and the code after it runs then.

        True only before the local deadline: a process frozen past it does not act when it wakes.
        False once the loop has ended the role. Past the deadline but not ended yet, it waits for
        the loop's word: a renewal still in flight moves the deadline on (True), or the loop ends
        the role (False), at once when the loop runs. With no word within ``word_within`` past the
        deadline (a context made by hand, a wedged loop), False: the safe side."""
        self._wait(self.ended, seconds)
        if self.ended.is_set():
            return False
        if self.clock() < self.acting_until:
            return True
        word = threading.Event()
        with self._listening(word.set):
            while True:
                word.clear()  # before looking: a word from now on is not missed
                answer, left = self._answer()
                if answer is not None:
                    return answer
                self._wait(word, left)

    async def asleep(self, seconds: float) -> bool:
        """Sleep in an async task; then whether the role goes on, as ``sleep`` says (past the local
        deadline: wait for the loop's word, bounded by ``word_within``). The task is *cancelled*
        when the role ends (CancelledError out of this await): clean up in ``finally``, not after
        the loop."""
        await asyncio.sleep(seconds)
        if self.ended.is_set():
            return False
        if self.clock() < self.acting_until:
            return True
        loop = asyncio.get_running_loop()
        word = asyncio.Event()

        def tell() -> None:  # from any thread
            try:
                loop.call_soon_threadsafe(word.set)
            except RuntimeError:  # the loop has closed: nobody waits any more
                pass

        with self._listening(tell):
            while True:
                word.clear()
                answer, left = self._answer()
                if answer is not None:
                    return answer
                waiting = asyncio.ensure_future(word.wait())
                try:
                    await asyncio.wait({waiting}, timeout=left)
                finally:
                    waiting.cancel()

    def _answer(self) -> tuple[bool | None, float]:
        """Past a sleep: True (before the deadline), False (ended, or no word within word_within of
        the deadline), or None and how long to wait on for the loop's word."""
        if self.ended.is_set():
            return False, 0.0
        now, until = self.clock(), self.acting_until
        if now < until:
            return True, 0.0
        left = until + self.word_within - now
        if left <= 0:
            log.warning("no word from the election loop %g s past the local deadline: %s task's sleep "
                        "answers False (is the event loop blocked?)", self.word_within, self.role.value)
            return False, 0.0
        return None, left

    def _wait(self, event: threading.Event, seconds: float | None) -> None:
        if isinstance(self.clock, WaitingClock):
            self.clock.wait(event, seconds)
        else:
            event.wait(seconds)

    @contextmanager
    def _listening(self, listener: Callable[[], None]) -> Iterator[None]:
        with self._listeners_lock:
            self._listeners.add(listener)
        try:
            yield
        finally:
            with self._listeners_lock:
                self._listeners.discard(listener)

    def _tell(self) -> None:
        """The loop's word: wake every sleep waiting for it."""
        lock = getattr(self, "_listeners_lock", None)  # (not yet there while __init__ runs)
        if lock is None:
            return
        with lock:
            listeners = list(self._listeners)
        for listener in listeners:
            listener()


class LeaderContext(RoleContext):
    """A leader task's context: ``term`` is this leadership's fencing token.

    Write to your store only ``WHERE term <= :term`` (or check a term row in the same
    transaction): a leader that lost its lease without knowing it (a long pause, a partition) then
    cannot overwrite the work of the next one, whose term is higher.

    Made by hand (``LeaderContext("me", term=7)``) it serves to test a leader task alone:
    ``advance_term`` (and ``advance_term_blocking``) then just raise ``term``, and ``ended.set()``
    ends the role.
    """

    term: int

    def __init__(self, instance_id: str, term: int, *, leader: LeaderRecord | None = None,
                 clock: Callable[[], float] = time.monotonic, acting_until: float = math.inf,
                 advance: Callable[[LeaderContext, int], Awaitable[int]] | None = None) -> None:
        super().__init__(instance_id, Role.LEADER, term, leader, clock=clock, acting_until=acting_until)
        self._advance = advance
        # The election's event loop (the one that makes the context), for advance_term_blocking.
        self._election_loop: asyncio.AbstractEventLoop | None = None
        if advance is not None:
            try:
                self._election_loop = asyncio.get_running_loop()
            except RuntimeError:
                pass

    async def advance_term(self, at_least: int) -> int:
        """Move this leadership's term to at least ``at_least``, recorded under the lease; returns
        the new term, also in ``self.term``.

        For a store that has seen a newer term than the lease's own record (the lease blob or the
        election path was reset while the database was kept): the fencing check then refuses
        every write of this leader, so ask for ``stored_term + 1`` and write again. Only the holder
        can, and only before its local deadline, so a stale leader cannot use it to get around the
        fencing check: it raises LeaseLostError then, StorageUnavailableError if the backend did
        not answer in time. A plain (thread) task calls ``advance_term_blocking`` instead.
        """
        if self._advance is None:  # made by hand, outside an election
            self.term = max(self.term, at_least)
            return self.term
        return await self._advance(self, at_least)

    def advance_term_blocking(self, at_least: int, timeout: float | None = None) -> int:
        """``advance_term`` for a plain (thread) task: runs it on the election's event loop and
        waits for it. Raises as it does; also LeaseLostError at once when the role ends meanwhile,
        and StorageUnavailableError after ``timeout`` seconds (None: the call's own bound, the
        local deadline). The call cut short is waited for before this instance acquires again.

        Not in an async task: waiting here would block the event loop the election runs on
        (RuntimeError); ``await ctx.advance_term(...)`` there. Made by hand, it raises ``term``.
        """
        loop = self._election_loop
        if self._advance is None or loop is None:
            self.term = max(self.term, at_least)
            return self.term
        try:
            running: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            raise RuntimeError("advance_term_blocking would block the event loop the election runs on: "
                               f"in an async task, await ctx.advance_term({at_least}) instead")
        future = asyncio.run_coroutine_threadsafe(self.advance_term(at_least), loop)
        word = threading.Event()  # the call is done, or the loop's word (the role may have ended)
        future.add_done_callback(lambda _: word.set())
        give_up_at = math.inf if timeout is None else self.clock() + timeout
        with self._listening(word.set):
            while True:
                word.clear()  # before looking: a word from now on is not missed
                if future.done():
                    return future.result()
                if self.ended.is_set():
                    future.cancel()
                    raise LeaseLostError("not the leader any more")
                left = give_up_at - self.clock()
                if left <= 0:
                    future.cancel()
                    raise StorageUnavailableError(f"advancing the term: no answer within {timeout:g} s")
                self._wait(word, None if left == math.inf else left)


class WorkerContext(RoleContext):
    """A worker task's context: ``leader`` is the latest leader seen (None before the first)."""

    term: None

    def __init__(self, instance_id: str, *, leader: LeaderRecord | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(instance_id, Role.WORKER, None, leader, clock=clock)


LeaderTask = Callable[[LeaderContext], Awaitable[None] | None]
WorkerTask = Callable[[WorkerContext], Awaitable[None] | None]
RoleTask = Callable[[RoleContext], Awaitable[None] | None]  # a task written for either role


def is_async_task(fn: object) -> bool:
    """An ``async def`` function, or an object whose ``__call__`` is one (a task written as a class):
    run on the loop and cancelled, rather than in a thread whose returned coroutine nobody awaits."""
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(type(fn).__call__)


class RoleRun:
    """A leader or worker task in flight: async tasks are cancelled, plain ones asked to return."""

    def __init__(self, fn: Callable[[Any], Awaitable[None] | None], ctx: RoleContext) -> None:
        self.ctx = ctx
        self.started_at = ctx.clock()
        self._reported = False
        self.is_async = is_async_task(fn)
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
        """What the task raised (None: still running, returned, or cancelled by the loop)."""
        if not self.task.done() or self.task.cancelled():
            return None
        exc = self.task.exception()
        return None if isinstance(exc, asyncio.CancelledError) else exc

    def ran_for(self) -> float:
        return self.ctx.clock() - self.started_at

    def report(self) -> None:
        exc = self.failure()
        if exc is not None and not self._reported:
            self._reported = True
            log.error("%s task failed: %s", self.ctx.role.value, exc, exc_info=exc)


class Backoff:
    """How long to wait before starting again a task that failed: ``first``, doubled for every
    failure in a row, at most ``longest``. A task that ran ``longest`` or more before it failed
    starts the count again: it was healthy for a while."""

    def __init__(self, first: float = 1.0, longest: float = 60.0) -> None:
        self.first, self.longest = first, longest
        self.failures = 0  # in a row

    def next_delay(self, ran_for: float) -> float:
        if ran_for >= self.longest:
            self.failures = 0
        self.failures += 1
        return min(self.first * 2.0 ** (self.failures - 1), self.longest)

    def reset(self) -> None:
        self.failures = 0
