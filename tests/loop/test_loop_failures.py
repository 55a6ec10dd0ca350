"""What the election loop does when a task fails (on_task_failure: restart with backoff, or stop)
and when leader work stalls. On MemoryBackend in virtual time (see test_loop_leading.py)."""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from DistributedMutex import ConfigurationError
from DistributedMutex.roles import LeaderContext, WorkerContext
from DistributedMutex.testing import MemoryStore, VirtualClock, running, wait_until
from support.loop import idle_leader, mutex

EPS = 1e-6


# -- failures --------------------------------------------------------------------------------------

def test_a_failing_worker_task_is_started_again_with_backoff(
        clock: VirtualClock, store: MemoryStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="DistributedMutex")
    starts: list[float] = []

    def work(ctx: WorkerContext) -> None:
        starts.append(clock())
        raise RuntimeError("worker broke")

    store = MemoryStore(clock=clock, lease_duration=10)  # fewer renewals over the long run
    leader, b = mutex(store, "leader", idle_leader), mutex(store, "b", idle_leader, work)

    async def scenario() -> None:
        async with running(leader):
            await wait_until(lambda: store.holder() == "leader", within=1, what="leader leading")
            async with running(b):
                await asyncio.sleep(130)

    clock.run(scenario())
    gaps = [round(later - earlier, 6) for earlier, later in itertools.pairwise(starts)]
    assert gaps == [1, 2, 4, 8, 16, 32, 60], gaps  # doubling, at most 60 s
    messages = [r.getMessage() for r in caplog.records]
    assert messages.count("worker task failed: worker broke") == len(starts)
    assert "starting the worker task again in 1 s (failure 1 in a row)" in messages


def test_a_worker_that_ran_long_enough_starts_the_backoff_afresh(clock: VirtualClock, store: MemoryStore) -> None:
    starts: list[float] = []

    async def work(ctx: WorkerContext) -> None:
        starts.append(clock())
        await asyncio.sleep(0.5 if len(starts) != 3 else 61)
        raise RuntimeError("worker broke")

    store = MemoryStore(clock=clock, lease_duration=10)  # fewer renewals over the long run
    leader, b = mutex(store, "leader", idle_leader), mutex(store, "b", idle_leader, work)

    async def scenario() -> None:
        async with running(leader):
            await wait_until(lambda: store.holder() == "leader", within=1, what="leader leading")
            async with running(b):
                await wait_until(lambda: len(starts) == 5, within=120, what="five worker runs")

    clock.run(scenario())
    delays = [round(later - earlier - ran, 6) for earlier, later, ran in zip(starts, starts[1:], [0.5, 0.5, 61, 0.5], strict=False)]
    assert delays == [1, 2, 1, 2], delays


def test_on_task_failure_stop_ends_run_with_the_workers_error(clock: VirtualClock, store: MemoryStore) -> None:
    async def work(ctx: WorkerContext) -> None:
        await asyncio.sleep(1)
        raise ValueError("no way on")

    leader = mutex(store, "leader", idle_leader)
    b = mutex(store, "b", idle_leader, work, on_task_failure="stop")

    async def scenario() -> None:
        async with running(leader):
            await wait_until(lambda: store.holder() == "leader", within=1, what="leader leading")
            with pytest.raises(ValueError, match="no way on"):
                await b.run_async()
            assert clock() == pytest.approx(1, abs=0.06)

    clock.run(scenario())


def test_a_failing_leader_task_steps_down_and_a_healthy_instance_leads(
        clock: VirtualClock, store: MemoryStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="DistributedMutex")
    led: list[tuple[str, int, float]] = []

    def leader_of(who: str, fails: bool):
        async def lead(ctx: LeaderContext) -> None:
            led.append((who, ctx.term, clock()))
            if fails:
                raise RuntimeError("boom")
            await idle_leader(ctx)
        return lead

    a, b = mutex(store, "a", leader_of("a", True)), mutex(store, "b", leader_of("b", False))

    async def scenario() -> None:
        async with running(a):
            await wait_until(lambda: led, within=1, what="a leading")
            async with running(b):
                await asyncio.sleep(30)

    clock.run(scenario())
    # (When the block ends, b stops first and a may lead again: not counted.)
    assert [(who, term) for who, term, at in led if at < 30] == [("a", 1), ("b", 2)], led
    messages = [r.getMessage() for r in caplog.records]
    assert "leader task failed: boom" in messages and "lost leadership: leader task failed" in messages


def test_a_leader_task_that_keeps_failing_backs_off(clock: VirtualClock, store: MemoryStore) -> None:
    led: list[float] = []

    async def lead(ctx: LeaderContext) -> None:
        led.append(clock())
        raise RuntimeError("boom")

    a = mutex(store, "a", lead)

    async def scenario() -> None:
        async with running(a):
            await wait_until(lambda: len(led) == 5, within=60, what="five leaderships")

    clock.run(scenario())
    gaps = [round(later - earlier, 3) for earlier, later in itertools.pairwise(led)]
    assert gaps == [1, 2, 4, 8], gaps


def test_on_task_failure_stop_releases_the_lease_then_ends_run_with_the_leaders_error(
        clock: VirtualClock, store: MemoryStore) -> None:
    async def lead(ctx: LeaderContext) -> None:
        await asyncio.sleep(2)
        raise KeyError("lost the plot")

    a = mutex(store, "a", lead, on_task_failure="stop")

    async def scenario() -> None:
        with pytest.raises(KeyError, match="lost the plot"):
            await a.run_async()

    clock.run(scenario())
    assert [e.kind for e in store.events if e.kind != "renewed"] == ["acquired", "released"]
    assert store.holder() is None


def test_on_task_failure_takes_restart_or_stop_only(store: MemoryStore) -> None:
    with pytest.raises(ConfigurationError, match="on_task_failure: must be 'restart' or 'stop', got 'retry'"):
        mutex(store, "a", idle_leader, on_task_failure="retry")


def test_a_stalled_leader_gives_the_lease_up_for_a_healthy_instance(
        clock: VirtualClock, store: MemoryStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="DistributedMutex")
    led: list[tuple[str, float]] = []

    async def wedged(ctx: LeaderContext) -> None:
        led.append(("wedged", clock()))
        await asyncio.Event().wait()  # never reports progress

    async def healthy(ctx: LeaderContext) -> None:
        led.append(("healthy", clock()))
        await idle_leader(ctx)

    a = mutex(store, "wedged", wedged, stall_timeout=2)
    b = mutex(store, "healthy", healthy, stall_timeout=2)

    async def scenario() -> None:
        async with running(a):
            await wait_until(lambda: led, within=1, what="wedged leading")
            async with running(b):
                await asyncio.sleep(10)

    clock.run(scenario())
    assert led[0] == ("wedged", 0.0) and led[1][0] == "healthy" and led[1][1] == pytest.approx(2, abs=EPS)
    # (When the block ends, b stops first and the wedged one may lead again: not counted.)
    assert len([at for _, at in led if at < 10]) == 2, "the healthy leader reports progress: it keeps the lease"
    lines = [r.getMessage() for r in caplog.records if "lost leadership" in r.getMessage()]
    assert lines[0] == "lost leadership: leader work made no progress for 2 s; giving the lease up for a healthy instance"
