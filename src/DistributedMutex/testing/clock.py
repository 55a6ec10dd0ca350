"""Virtual time: an event loop whose clock jumps to the next deadline whenever everything waits.

    clock = VirtualClock()
    store = MemoryStore(clock=clock)                     # the storage's leases expire in this time
    mutex = DistributedMutex(lead, backend=MemoryBackend(store))
    clock.run(scenario(mutex))                           # an hour of leases in a blink

Time stands still while anything can run: a coroutine that is ready, or a thread the loop started
(a storage call, a plain role task) that is working. When everything waits (for a timer, or for a
thread that waits on this clock with ``sleep``/``wait``), the clock jumps to the earliest moment
one of them wakes. So a test sees the timing it was written with, to the microsecond, at the
speed of the CPU; as with trio's MockClock(autojump_threshold=0) and the looptime package, but
also for the daemon threads the election loop runs its storage calls and plain tasks in.

Known to the clock: coroutines on its loop, threads started by ``DistributedMutex.threads``
(``blocking``, which the loop uses for every storage call) or ``loop.run_in_executor`` /
``asyncio.to_thread``. A thread that waits some other way (``time.sleep``, a socket) keeps virtual
time still until it is done, in real time.
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import selectors
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:  # typing has them from Python 3.11 on; only the type checker needs them here
    from concurrent.futures import Executor

    from typing_extensions import TypeVarTuple, Unpack

    Ts = TypeVarTuple("Ts")

T = TypeVar("T")
# How often a waiting thread, or the loop waiting on a working thread, looks again (real seconds):
# threading.Event.set() cannot notify the clock, so its waiters poll it.
POLL = 0.002
# A deadline this close is due: sums of floats (0.1 + 0.2) miss the exact moment. asyncio's loop
# treats its timers the same way (its clock resolution).
RESOLUTION = 1e-9
_BUSY, _IDLE, _GONE = "busy", "idle", "gone"
_local = threading.local()


@dataclass(eq=False)
class _Worker:
    """A thread the loop started: busy (time stands still), idle (waits on the clock) or gone."""

    state: str = _BUSY


@dataclass(eq=False)
class _Waiter:
    event: threading.Event
    deadline: float


class VirtualClock:
    """A monotonic clock for tests that moves only when everything waits; see the module."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._cond = threading.Condition()
        self._busy = 0  # workers in state _BUSY
        self._waiters: list[_Waiter] = []
        self._loop: asyncio.AbstractEventLoop | None = None  # the loop running on this clock

    def __call__(self) -> float:
        """Now, in virtual seconds (what ``time.monotonic()`` is to a real process)."""
        return self._now

    def __repr__(self) -> str:
        return f"VirtualClock(now={self._now:g})"

    # -- running coroutines in virtual time ----------------------------------------------------

    def run(self, main: Coroutine[Any, Any, T], *, timeout: float | None = 3600.0) -> T:
        """Run ``main`` on an event loop whose time is this clock; return its result.

        ``timeout``: virtual seconds after which ``main`` is cancelled and TimeoutError raised (a
        test that waits for something that never happens ends, at once in real time)."""
        loop = VirtualTimeLoop(self)
        try:
            asyncio.set_event_loop(loop)
            return loop.run_until_complete(_bounded(main, timeout))
        finally:
            try:
                _cancel_remaining(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    def advance(self, seconds: float) -> None:
        """Jump ahead at once, as if the whole process had been frozen for ``seconds`` (called
        from a coroutine: timers that fall due meanwhile fire late, all together)."""
        if seconds < 0:
            raise ValueError(f"seconds: a clock cannot go back ({seconds:g})")
        with self._cond:
            self._now += seconds
            self._cond.notify_all()

    # -- threads waiting in virtual time -------------------------------------------------------

    def sleep(self, seconds: float) -> None:
        """``time.sleep`` in virtual time, for a thread."""
        self.wait(threading.Event(), seconds)

    def wait(self, event: threading.Event, timeout: float | None = None) -> bool:
        """``event.wait(timeout)`` in virtual time, for a thread; True if the event is set."""
        worker = _current_worker(self)
        with self._cond:
            waiter = _Waiter(event, math.inf if timeout is None else self._now + max(0.0, timeout))
            self._waiters.append(waiter)
            if worker is not None and worker.state == _BUSY:
                worker.state, self._busy = _IDLE, self._busy - 1
                if self._busy == 0:
                    self._nudge()
            try:
                while not event.is_set() and self._now + RESOLUTION < waiter.deadline:
                    self._cond.wait(POLL)
            finally:
                self._waiters.remove(waiter)
                if worker is not None and worker.state == _IDLE:
                    worker.state, self._busy = _BUSY, self._busy + 1
            return event.is_set()

    # -- for the loop and DistributedMutex.threads ----------------------------------------------

    def track(self, body: Callable[[], None], done: asyncio.Future[Any]) -> Callable[[], None]:
        """``body`` to run in a new thread, counted as working from now until ``done`` is done
        (on the loop: the thread's outcome has reached it) or the thread waits on this clock."""
        worker = self._enlist(done)

        def run() -> None:
            _local.worker = (self, worker)
            try:
                body()
            finally:
                _local.worker = None

        return run

    def _enlist(self, done: asyncio.Future[Any]) -> _Worker:
        worker = _Worker()
        with self._cond:
            self._busy += 1
        done.add_done_callback(lambda _: self._retire(worker))
        return worker

    def _retire(self, worker: _Worker) -> None:
        with self._cond:
            if worker.state == _BUSY:
                self._busy -= 1
            worker.state = _GONE

    def _nudge(self) -> None:
        """Wake the loop from its wait for working threads: the last one has started waiting."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(_nothing)
            except RuntimeError:  # closed in between
                pass

    def _runnable(self) -> bool:
        """Something can run without time passing (call with the lock held)."""
        return self._busy > 0 or any(w.event.is_set() or w.deadline <= self._now + RESOLUTION for w in self._waiters)

    def select(self, inner: selectors.BaseSelector, timeout: float | None) -> list[tuple[selectors.SelectorKey, int]]:
        """The loop's select: ``timeout`` is the virtual time to its next timer (None: no timer)."""
        if timeout is not None and timeout <= 0:
            return inner.select(0)
        with self._cond:
            runnable = self._runnable()
        if runnable:
            # A thread works: wait for it in real time (its outcome comes through the loop's
            # self-pipe, or it starts waiting on this clock); virtual time stands still.
            return inner.select(POLL)
        ready = inner.select(0)  # after reading the state: an outcome delivered before is seen here
        if ready:
            return ready
        with self._cond:
            if self._runnable():
                return []
            target = math.inf if timeout is None else self._now + timeout
            target = min([target, *(w.deadline for w in self._waiters)])
            if target < math.inf:
                # Always forward, by at least the resolution: a deadline a rounding error ahead
                # (now + 1e-17 == now) would otherwise be waited for with time standing still.
                self._now = max(target, self._now + RESOLUTION, math.nextafter(self._now, math.inf))
                self._cond.notify_all()
                return []
        return inner.select(None)  # nothing will ever happen in virtual time: only from outside


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio event loop on a VirtualClock (``VirtualClock.run`` makes one)."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__(selector=_VirtualSelector(clock))
        # DistributedMutex and DistributedMutex.threads look for this attribute.
        self.virtual_clock = clock
        clock._loop = self

    def time(self) -> float:
        return self.virtual_clock()

    def call_at(self, when: float, callback: Callable[[Unpack[Ts]], object], *args: Unpack[Ts],
                context: contextvars.Context | None = None) -> asyncio.TimerHandle:
        # asyncio runs a timer once it is due within its clock's resolution. Real time then goes
        # on by itself; virtual time would not, and code that compares the clock with the moment
        # it waited for (``while clock() < deadline: wait``) would spin. Due a resolution later,
        # a timer fires only once the clock has reached its moment.
        return super().call_at(when + RESOLUTION, callback, *args, context=context)

    def run_in_executor(self, executor: Executor | None, func: Callable[[Unpack[Ts]], T],
                        *args: Unpack[Ts]) -> asyncio.Future[T]:
        clock = self.virtual_clock
        outcome: asyncio.Future[T] = self.create_future()
        worker = clock._enlist(outcome)

        def counted(*call_args: Unpack[Ts]) -> T:
            _local.worker = (clock, worker)
            try:
                return func(*call_args)
            finally:
                _local.worker = None

        inner = super().run_in_executor(executor, counted, *args)
        # ``outcome`` is done once the loop has the result (the executor's future is chained
        # to ``inner`` through the loop): only then does the thread stop counting as working.
        inner.add_done_callback(lambda done: _copy_outcome(done, outcome))
        outcome.add_done_callback(lambda done: done.cancelled() and inner.cancel())
        return outcome


class _VirtualSelector(selectors.BaseSelector):
    """The default selector, with ``select`` deciding when virtual time moves."""

    def __init__(self, clock: VirtualClock) -> None:
        self._clock = clock
        self._inner = selectors.DefaultSelector()

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        return self._clock.select(self._inner, timeout)

    def close(self) -> None:
        self._inner.close()

    def get_map(self) -> Any:
        return self._inner.get_map()


def current_clock() -> VirtualClock | None:
    """The VirtualClock whose loop started the calling thread (None in any other thread)."""
    tracked = getattr(_local, "worker", None)
    return tracked[0] if tracked is not None else None


def _current_worker(clock: VirtualClock) -> _Worker | None:
    tracked = getattr(_local, "worker", None)
    return tracked[1] if tracked is not None and tracked[0] is clock else None


def _nothing() -> None:
    pass


def _copy_outcome(source: asyncio.Future[T], target: asyncio.Future[T]) -> None:
    if target.done():
        return
    if source.cancelled():
        target.cancel()
    elif source.exception() is not None:
        target.set_exception(source.exception())  # type: ignore[arg-type]
    else:
        target.set_result(source.result())


async def _bounded(main: Coroutine[Any, Any, T], timeout: float | None) -> T:
    task = asyncio.ensure_future(main)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        await asyncio.wait({task})
        raise TimeoutError(f"not done after {timeout:g} s of virtual time: it waits for something that never happens")
    return task.result()


def _cancel_remaining(loop: asyncio.AbstractEventLoop) -> None:
    """What asyncio.run does at the end: cancel what is left and let it finish."""
    tasks = asyncio.all_tasks(loop)
    if not tasks:
        return
    for task in tasks:
        task.cancel()
    loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            loop.call_exception_handler({"message": "unhandled exception during VirtualClock.run() shutdown",
                                         "exception": task.exception(), "task": task})
