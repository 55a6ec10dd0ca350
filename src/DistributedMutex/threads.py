"""Run blocking calls off the event loop, in daemon threads.

    run_in_daemon_thread   one call in a thread of its own (a plain role task, for as long as it runs)
    blocking               the same, awaited
    CallWorker             many short calls, one after another, in one long-lived thread (the
                           election loop's storage calls)
    SideWorker             the same for a blocking caller: a call made beside its own (the blob
                           lease's stamp, sent beside each renewal)

Why not ``asyncio.to_thread``: the default executor's threads are joined when the interpreter
exits, so one storage call hung on a dead socket would keep a stopped instance alive. A daemon
thread is abandoned instead; its late answer is dropped.

On the virtual-time event loop of DistributedMutex.testing, time must stand still while such a
thread works (or a storage call that takes a millisecond of real time could miss a deadline in
virtual time): the loop's clock is told when the thread starts and when its outcome has reached
the loop.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
J = TypeVar("J")  # what a worker thread is given to do


def run_in_daemon_thread(fn: Callable[..., T], *args: Any, name: str | None = None) -> asyncio.Future[T]:
    """Start ``fn(*args)`` in a new daemon thread; the returned future gets its outcome."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()
    body = _delivering(loop, future, fn, args)
    clock = getattr(loop, "virtual_clock", None)  # DistributedMutex.testing.VirtualClock, or none
    target = body if clock is None else clock.track(body, future)
    threading.Thread(target=target, name=name or getattr(fn, "__name__", "blocking"), daemon=True).start()
    return future


async def blocking(fn: Callable[..., T], *args: Any) -> T:
    """Await ``fn(*args)`` run in a daemon thread. Cancelling the await abandons the thread."""
    return await run_in_daemon_thread(fn, *args)


class _OneIdleThread(Generic[J]):
    """What CallWorker and SideWorker share: long-lived daemon threads, at most one of them waiting
    idle for the next job; a job given while that one is busy starts a thread of its own, which
    then becomes the idle one (the busy one ends once its job is done)."""

    def __init__(self, name: str) -> None:
        self._name = name
        self._lock = threading.Lock()
        self._idle: queue.SimpleQueue[J | None] | None = None  # the idle thread's inbox
        self._closed = False

    def close(self) -> None:
        """End the idle thread; a busy one ends when its job is done. A later job starts one again."""
        with self._lock:
            self._closed = True
            inbox, self._idle = self._idle, None
        if inbox is not None:
            inbox.put(None)

    def _give(self, job: J) -> None:
        with self._lock:
            self._closed = False
            inbox, self._idle = self._idle, None
        if inbox is None:
            inbox = queue.SimpleQueue()
            threading.Thread(target=self._serve, args=(inbox,), name=self._name, daemon=True).start()
        inbox.put(job)

    def _stay(self, inbox: queue.SimpleQueue[J | None]) -> bool:
        """In a worker thread, its job done: whether it becomes the idle one (not if another thread
        already is, this one having been busy meanwhile, or if closed)."""
        with self._lock:
            stays = self._idle is None and not self._closed
            if stays:
                self._idle = inbox
        return stays

    def _serve(self, inbox: queue.SimpleQueue[J | None]) -> None:
        raise NotImplementedError


class CallWorker(_OneIdleThread[Callable[[], None]]):
    """Runs blocking calls one after another in one long-lived daemon thread, as long as each call
    returns; a call made while that thread is still busy (a call the caller gave up waiting for,
    hung on a dead socket, or one running alongside) gets a thread of its own, which becomes the
    worker: the busy one ends once its call returns. So the election loop, which makes one storage
    call at a time, uses one thread for all of them, and a hung call never blocks the next one: it
    costs one thread, and only until it returns (each backend bounds its calls), as it did when
    every call had its own thread. At most one thread waits idle; ``close()`` ends it.

    On the virtual-time event loop of DistributedMutex.testing a call is counted as working from
    the moment it is made until its outcome has reached the loop, as with ``run_in_daemon_thread``.
    """

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self._thread = threading.local()  # in a worker thread: its inbox, and whether it stays

    def start(self, fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
        """Start ``fn(*args)`` in the worker thread (or a new one, if it is busy); the returned
        future gets its outcome."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        body = _delivering(loop, future, fn, args, before_delivering=self._free)
        clock = getattr(loop, "virtual_clock", None)  # DistributedMutex.testing.VirtualClock, or none
        self._give(body if clock is None else clock.track(body, future))
        return future

    def _serve(self, inbox: queue.SimpleQueue[Callable[[], None] | None]) -> None:
        self._thread.inbox, self._thread.stays = inbox, False
        while (job := inbox.get()) is not None:
            job()  # calls _free, below, before it hands the outcome over
            if not self._thread.stays:
                return

    def _free(self) -> None:
        """In the worker thread, its call done: wait for the next call unless another thread does.
        Before the outcome reaches the loop, so that the loop's next call, made as soon as it has
        the outcome, finds it free."""
        inbox = getattr(self._thread, "inbox", None)
        if inbox is not None:
            self._thread.stays = self._stay(inbox)


def _delivering(loop: asyncio.AbstractEventLoop, future: asyncio.Future[T], fn: Callable[..., T],
                args: tuple[Any, ...], before_delivering: Callable[[], None] | None = None) -> Callable[[], None]:
    """``fn(*args)``, its outcome handed to ``future`` on ``loop`` (dropped if nobody waits any more)."""

    def deliver(ok: bool, value: Any) -> None:
        if future.done():  # cancelled by a timeout: nobody wants the answer any more
            return
        if ok:
            future.set_result(value)
        else:
            future.set_exception(value)

    def body() -> None:
        outcome: tuple[bool, object]  # (True, fn's result) or (False, the exception it raised)
        try:
            outcome = (True, fn(*args))
        except BaseException as exc:  # noqa: BLE001 - handed to the awaiting coroutine
            outcome = (False, exc)
        if before_delivering is not None:
            before_delivering()
        try:
            loop.call_soon_threadsafe(deliver, *outcome)
        except RuntimeError:
            pass  # the loop has closed: the process is shutting down

    return body


class SideCall:
    """A call running in a SideWorker; ``result()`` waits for it and raises what it raised."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self._error: BaseException | None = None

    def result(self, timeout: float | None = None) -> None:
        """Wait for the call (TimeoutError after ``timeout`` seconds); raise what it raised."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"the call did not return within {timeout:g} s")
        if self._error is not None:
            raise self._error

    def _finish(self, error: BaseException | None) -> None:
        self._error = error
        self._done.set()


class SideWorker(_OneIdleThread[tuple[Callable[[], Any], SideCall]]):
    """Calls made beside the caller's own, in one long-lived daemon thread: not a new OS thread
    per call. A call that hangs keeps its thread, and the next one gets a fresh thread meanwhile;
    ``close()`` ends the idle thread, and a busy one once its call returns (as CallWorker does)."""

    def start(self, call: Callable[[], Any]) -> SideCall:
        side = SideCall()
        self._give((call, side))
        return side

    def _serve(self, inbox: queue.SimpleQueue[tuple[Callable[[], Any], SideCall] | None]) -> None:
        while (item := inbox.get()) is not None:
            call, side = item
            error: BaseException | None = None
            try:
                call()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller by result()
                error = exc
            # Idle again before the caller hears of it, so that its next call finds this thread.
            stays = self._stay(inbox)
            side._finish(error)
            if not stays:
                return
