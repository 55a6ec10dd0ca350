"""What several of the loop's unit tests (tests/loop/) build their contenders from."""

from __future__ import annotations

from typing import Any

from DistributedMutex import DistributedMutex, Identity
from DistributedMutex.roles import LeaderContext
from DistributedMutex.testing import MemoryBackend, MemoryStore


def mutex(store: MemoryStore, who: str, lead: Any, work: Any = None, **options: Any) -> DistributedMutex:
    """A contender named ``who`` on its own MemoryBackend of ``store``."""
    return DistributedMutex(lead, work, backend=MemoryBackend(store), identity=Identity(who), **options)


async def idle_leader(ctx: LeaderContext) -> None:
    """A leader task that only says it is alive, until its role ends."""
    while await ctx.asleep(0.05):
        ctx.report_progress()
