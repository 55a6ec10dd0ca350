"""Run the weather leader's loop in-process until a condition holds (bounded), then end its role."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from distributed_mutex_demo.app import WeatherApp
from DistributedMutex.mutex import Role, RoleContext


async def run_leader_until(app: WeatherApp, done: Callable[[], bool], timeout: float, *, term: int = 1,
                           instance_id: str = "loop-test") -> asyncio.Task[None]:
    """Returns the (finished) task: cancelled, unless the loop ended by itself first."""
    ctx = RoleContext(instance_id, Role.LEADER, term=term)
    task = asyncio.create_task(app.lead(ctx))
    try:
        async with asyncio.timeout(timeout):
            while not done():
                assert not task.done(), task.exception()
                await asyncio.sleep(0.05)
    finally:
        ctx.ended.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
    return task
