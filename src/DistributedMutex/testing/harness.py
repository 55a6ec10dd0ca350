"""Two helpers for tests that run DistributedMutex in an event loop (virtual or real time).

    async with running(a, b):                      # their loops run as tasks for the block
        await wait_until(lambda: store.holder() == "a", within=5, what="a leading")
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from DistributedMutex.mutex import DistributedMutex

T = TypeVar("T")


@asynccontextmanager
async def running(*mutexes: DistributedMutex) -> AsyncIterator[list[asyncio.Task[None]]]:
    """Run each mutex's election loop as a task for the block (yields the tasks); then stop them
    all and wait until they have ended: leader tasks stopped, leases released. An election that
    ended with an error (``on_task_failure="stop"``, StorageRejectedError) raises it here."""
    tasks = [asyncio.ensure_future(mutex.run_async()) for mutex in mutexes]
    await asyncio.sleep(0)  # each loop starts, so that stop() reaches it
    try:
        yield tasks
    finally:
        for mutex in mutexes:
            mutex.stop()
        await asyncio.wait(tasks)
    for task in tasks:
        if not task.cancelled() and task.exception() is not None:
            raise task.exception()  # type: ignore[misc]


async def wait_until(condition: Callable[[], T], *, within: float, what: str = "the condition",
                     every: float = 0.01) -> T:
    """``condition()`` every ``every`` seconds of the loop's time until it is true; returns it.
    AssertionError naming ``what`` if it is still false after ``within`` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not (result := condition()):
        if loop.time() >= deadline:
            raise AssertionError(f"{what}: not within {within:g} s")
        await asyncio.sleep(every)
    return result
