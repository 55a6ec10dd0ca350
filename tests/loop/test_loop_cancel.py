"""Cancelling run_async() from outside (task.cancel(), asyncio.wait_for, asyncio.timeout) behaves as
stop(): the tasks are stopped (bounded as on stop), the lease is released, and then the
CancelledError goes on. On MemoryBackend in virtual time (see test_loop_leading.py)."""

from __future__ import annotations

import asyncio
import sys

import pytest

from DistributedMutex import DistributedMutex, Identity, StepDownReason
from DistributedMutex.observer import ElectionObserver
from DistributedMutex.roles import LeaderContext, WorkerContext
from DistributedMutex.testing import MemoryBackend, MemoryStore, VirtualClock, wait_until

EPS = 1e-6


class StepDowns(ElectionObserver):
    def __init__(self) -> None:
        self.causes: list[StepDownReason] = []
        self.stopped = False

    def lost_leadership(self, term: int, cause: StepDownReason) -> None:
        self.causes.append(cause)

    def election_stopped(self) -> None:
        self.stopped = True


class Leader:
    """An async leader task that records what it did, and cleans up in 0.2 s."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.ctx: LeaderContext | None = None
        self.acts: list[float] = []
        self.cleaned: list[tuple[float, str | None]] = []
        self.store: MemoryStore | None = None

    async def lead(self, ctx: LeaderContext) -> None:
        self.ctx = ctx
        try:
            while await ctx.asleep(0.05):
                self.acts.append(self.clock())
        finally:
            await asyncio.sleep(0.2)
            self.cleaned.append((self.clock(), self.store.holder() if self.store else None))


def test_cancelling_run_async_stops_the_leader_task_and_releases_the_lease(
        clock: VirtualClock, store: MemoryStore) -> None:
    leader, observer = Leader(clock), StepDowns()
    leader.store = store
    a = DistributedMutex(leader.lead, backend=MemoryBackend(store), identity=Identity("a"), observer=observer)

    async def scenario() -> float:
        election = asyncio.ensure_future(a.run_async())
        await wait_until(lambda: leader.acts, within=1, what="a leading")
        cancelled_at = clock()
        election.cancel()
        await asyncio.wait({election})
        assert election.cancelled(), "run_async did not end with the CancelledError"
        acts = len(leader.acts)
        await asyncio.sleep(1)
        assert len(leader.acts) == acts, "the leader task acted on after run_async was cancelled"
        return cancelled_at

    cancelled_at = clock.run(scenario())
    assert leader.ctx is not None and leader.ctx.ended.is_set()
    assert leader.cleaned == [(pytest.approx(cancelled_at + 0.2, abs=EPS), "a")], "released before the cleanup"
    assert store.holder() is None and [e.kind for e in store.events if e.kind != "renewed"] == ["acquired", "released"]
    assert observer.causes == [StepDownReason.SHUTDOWN] and observer.stopped
    assert a.term is None


def test_a_timeout_around_run_async_stops_a_plain_leader_task_and_releases(
        clock: VirtualClock, store: MemoryStore) -> None:
    returned: list[tuple[float, bool]] = []

    def lead(ctx: LeaderContext) -> None:
        while ctx.sleep(0.05):
            pass
        returned.append((clock(), ctx.ended.is_set()))

    a = DistributedMutex(lead, backend=MemoryBackend(store), identity=Identity("a"))

    async def scenario() -> None:
        with pytest.raises((TimeoutError, asyncio.TimeoutError)):
            await asyncio.wait_for(a.run_async(), 1.0)

    clock.run(scenario())
    assert returned == [(pytest.approx(1.0, abs=EPS), True)]
    assert store.holder() is None and store.events[-1].kind == "released"


@pytest.mark.skipif(sys.version_info < (3, 11), reason="asyncio.timeout is new in Python 3.11")
def test_asyncio_timeout_around_run_async_releases_the_lease(clock: VirtualClock, store: MemoryStore) -> None:
    leader = Leader(clock)
    a = DistributedMutex(leader.lead, backend=MemoryBackend(store), identity=Identity("a"))

    async def scenario() -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(1.0):  # type: ignore[attr-defined]
                await a.run_async()

    clock.run(scenario())
    assert [at for at, _ in leader.cleaned] == [pytest.approx(1.2, abs=EPS)]
    assert store.holder() is None and store.events[-1].kind == "released"


def test_cancelling_run_async_while_contending_stops_the_worker_task(clock: VirtualClock, store: MemoryStore) -> None:
    ended: list[float] = []
    cancelled_at: list[float] = []

    async def work(ctx: WorkerContext) -> None:
        try:
            while await ctx.asleep(0.05):
                pass
        finally:
            ended.append(clock())

    async def idle(ctx: LeaderContext) -> None:
        while await ctx.asleep(0.05):
            pass

    holder = DistributedMutex(idle, backend=MemoryBackend(store), identity=Identity("holder"))
    b = DistributedMutex(idle, work, backend=MemoryBackend(store), identity=Identity("b"))

    async def scenario() -> None:
        first = asyncio.ensure_future(holder.run_async())
        await wait_until(lambda: store.holder() == "holder", within=1, what="holder leading")
        second = asyncio.ensure_future(b.run_async())
        await asyncio.sleep(0.5)
        cancelled_at.append(clock())
        second.cancel()
        await asyncio.wait({second})
        assert second.cancelled()
        holder.stop()
        await first

    clock.run(scenario())
    assert ended == [pytest.approx(cancelled_at[0], abs=EPS)]
    assert "b" not in {e.instance_id for e in store.events}


def test_a_second_cancellation_during_the_shutdown_does_not_cut_it_short(
        clock: VirtualClock, store: MemoryStore) -> None:
    leader = Leader(clock)
    leader.store = store
    a = DistributedMutex(leader.lead, backend=MemoryBackend(store), identity=Identity("a"))

    async def scenario() -> None:
        election = asyncio.ensure_future(a.run_async())
        await wait_until(lambda: leader.acts, within=1, what="a leading")
        election.cancel()
        await asyncio.sleep(0.1)  # the leader task is cleaning up (0.2 s)
        election.cancel()
        await asyncio.wait({election})
        assert election.cancelled()

    clock.run(scenario())
    assert len(leader.cleaned) == 1 and leader.cleaned[0][1] == "a"
    assert store.holder() is None and store.events[-1].kind == "released"
