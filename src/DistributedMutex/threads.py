"""Run blocking calls off the event loop, in daemon threads.

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
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def run_in_daemon_thread(fn: Callable[..., T], *args: Any, name: str | None = None) -> asyncio.Future[T]:
    """Start ``fn(*args)`` in a new daemon thread; the returned future gets its outcome."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

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
        try:
            loop.call_soon_threadsafe(deliver, *outcome)
        except RuntimeError:
            pass  # the loop has closed: the process is shutting down

    clock = getattr(loop, "virtual_clock", None)  # DistributedMutex.testing.VirtualClock, or none
    target = body if clock is None else clock.track(body, future)
    threading.Thread(target=target, name=name or getattr(fn, "__name__", "blocking"), daemon=True).start()
    return future


async def blocking(fn: Callable[..., T], *args: Any) -> T:
    """Await ``fn(*args)`` run in a daemon thread. Cancelling the await abandons the thread."""
    return await run_in_daemon_thread(fn, *args)
