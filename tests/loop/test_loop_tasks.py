"""Leader and worker tasks under the election loop: plain and async, how they end, the lease kept
until the leader task has returned. On MemoryBackend in virtual time (see test_loop_leading.py for
the timing); failures and stalls are in test_loop_failures.py."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from DistributedMutex.roles import LeaderContext, WorkerContext
from DistributedMutex.testing import MemoryStore, VirtualClock, running, wait_until
from support.loop import idle_leader, mutex

EPS = 1e-6


# -- how a task ends -------------------------------------------------------------------------------

def test_a_plain_task_runs_in_a_thread_and_the_code_after_its_loop_runs(
        clock: VirtualClock, store: MemoryStore) -> None:
    seen: list[tuple[str, object]] = []

    def lead(ctx: LeaderContext) -> None:
        seen.append(("thread", threading.current_thread() is not threading.main_thread()))
        rounds = 0
        while ctx.sleep(0.1):
            rounds += 1
        seen.append(("after the loop", (rounds, clock())))

    a = mutex(store, "a", lead)

    async def scenario() -> None:
        async with running(a):
            await asyncio.sleep(1.001)

    clock.run(scenario())
    assert seen[0] == ("thread", True)
    assert seen[1][0] == "after the loop" and seen[1][1] == (10, pytest.approx(1.001, abs=EPS))


def test_an_async_task_is_cancelled_so_only_its_finally_runs(clock: VirtualClock, store: MemoryStore) -> None:
    seen: list[str] = []

    async def lead(ctx: LeaderContext) -> None:
        try:
            while await ctx.asleep(0.1):
                pass
            seen.append("after the loop")  # never: the task is cancelled in asleep
        finally:
            seen.append(f"finally at {clock():.3f}")

    a = mutex(store, "a", lead)

    async def scenario() -> None:
        async with running(a):
            await asyncio.sleep(1.001)

    clock.run(scenario())
    assert seen == ["finally at 1.001"]


def test_plain_and_async_tasks_read_the_same_and_see_the_same_time(clock: VirtualClock, store: MemoryStore) -> None:
    rounds = {"plain": 0, "async": 0}

    def plain(ctx: WorkerContext) -> None:
        while ctx.sleep(0.1):
            rounds["plain"] += 1

    async def in_async(ctx: WorkerContext) -> None:
        while await ctx.asleep(0.1):
            rounds["async"] += 1

    leader = mutex(store, "leader", idle_leader)
    p, q = mutex(store, "p", idle_leader, plain), mutex(store, "q", idle_leader, in_async)

    async def scenario() -> None:
        async with running(leader):
            await wait_until(lambda: store.holder() == "leader", within=1, what="leader leading")
            async with running(p, q):
                await asyncio.sleep(2.05)

    clock.run(scenario())
    assert rounds == {"plain": 20, "async": 20}


def test_is_active_turns_false_at_the_deadline_before_the_loop_notices(clock: VirtualClock, store: MemoryStore) -> None:
    seen: list[bool] = []

    async def lead(ctx: LeaderContext) -> None:
        seen.append(ctx.is_active())
        clock.advance(1.0)  # the whole process frozen for a second, past its deadline
        seen.append(ctx.is_active())
        await asyncio.Event().wait()

    a = mutex(store, "a", lead)

    async def scenario() -> None:
        async with running(a):
            await wait_until(lambda: len(seen) == 2, within=1, what="the leader task")

    clock.run(scenario())
    assert seen == [True, False]


def test_the_worker_stops_before_the_leader_task_starts_and_sees_the_leader(
        clock: VirtualClock, store: MemoryStore) -> None:
    seen: list[tuple[str, float, str | None]] = []

    async def lead(ctx: LeaderContext) -> None:
        seen.append(("lead", clock(), None))
        await idle_leader(ctx)

    async def work(ctx: WorkerContext) -> None:
        try:
            while await ctx.asleep(0.05):
                seen.append(("work", clock(), ctx.leader.instance_id if ctx.leader else None))
        finally:
            seen.append(("work ended", clock(), None))

    a, b = mutex(store, "a", idle_leader), mutex(store, "b", lead, work)

    async def scenario() -> float:
        async with running(a):
            await wait_until(lambda: store.holder() == "a", within=1, what="a leading")
            b_started = clock()
            async with running(b):
                await asyncio.sleep(1)
                a.stop()
                await wait_until(lambda: any(event == "lead" for event, *_ in seen), within=1, what="b leading")
        return b_started

    b_started = clock.run(scenario())
    first_work = [(e, at, who) for e, at, who in seen if e == "work"][:1]
    assert first_work == [("work", pytest.approx(b_started + 0.05, abs=EPS), "a")], first_work
    ended = next(at for event, at, _ in seen if event == "work ended")
    led = next(at for event, at, _ in seen if event == "lead")
    assert ended <= led


@pytest.mark.parametrize("kind", ["plain", "async"])
def test_the_lease_is_released_only_once_the_leader_task_has_cleaned_up(
        clock: VirtualClock, store: MemoryStore, kind: str) -> None:
    held_during_cleanup: list[str | None] = []

    def plain(ctx: LeaderContext) -> None:
        try:
            while ctx.sleep(0.1):
                pass
        finally:
            clock.sleep(0.2)  # a slow cleanup, in virtual time
            held_during_cleanup.append(store.holder())

    async def in_async(ctx: LeaderContext) -> None:
        try:
            while await ctx.asleep(0.1):
                pass
        finally:
            await asyncio.sleep(0.2)
            held_during_cleanup.append(store.holder())

    a = mutex(store, "a", plain if kind == "plain" else in_async)

    async def scenario() -> None:
        async with running(a):
            await asyncio.sleep(1)

    clock.run(scenario())
    assert held_during_cleanup == ["a"], "the lease was given back before the task had cleaned up"
    released = next(e.at for e in store.events if e.kind == "released")
    assert released == pytest.approx(1.2, abs=EPS)


# -- the leader task that does not stop ------------------------------------------------------------

def test_the_lease_is_kept_until_a_leader_task_that_will_not_stop_returns(
        clock: VirtualClock, store: MemoryStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="DistributedMutex")
    seen: list[tuple[str, float]] = []

    async def stubborn(ctx: LeaderContext) -> None:
        seen.append(("lead", clock()))
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            await asyncio.sleep(3)  # swallows the cancellation and goes on for 3 s
            seen.append(("returned", clock()))

    a = mutex(store, "a", stubborn)
    b = mutex(store, "b", idle_leader)

    async def scenario() -> float:
        async with running(a, b):
            await wait_until(lambda: seen, within=1, what="a leading")
            await asyncio.sleep(1)
            broken_at = clock()
            store.break_lease()  # a's role ends at once; its task goes on for 3 s
            await asyncio.sleep(5)
        return broken_at

    broken_at = clock.run(scenario())
    kinds = [(e.kind, e.instance_id) for e in store.events if e.kind != "renewed"]
    assert kinds[:3] == [("acquired", "a"), ("broken", "a"), ("acquired", "b")], kinds
    assert seen == [("lead", 0.0), ("returned", pytest.approx(broken_at + 3, abs=EPS))]
    assert ("acquired", "a") not in kinds[1:], "a contended again while its old task still ran"
    assert any("waiting for the previous leader task to return" in r.getMessage() for r in caplog.records)


def test_a_lease_whose_leader_task_will_not_stop_is_not_released_but_left_to_expire(
        clock: VirtualClock, store: MemoryStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="DistributedMutex")

    async def wedged(ctx: LeaderContext) -> None:
        try:
            await asyncio.Event().wait()  # never reports progress: the stall watchdog ends the role
        except asyncio.CancelledError:
            await asyncio.sleep(3)  # and it does not stop when cancelled

    a = mutex(store, "a", wedged, stall_timeout=1)
    b = mutex(store, "b", idle_leader)

    async def scenario() -> None:
        async with running(a):
            await wait_until(lambda: store.holder() == "a", within=1, what="a leading")
            async with running(b):
                await asyncio.sleep(5)

    clock.run(scenario())
    a_events = [e for e in store.events if e.instance_id == "a" and e.at < 5]  # (not the teardown's)
    assert "released" not in [e.kind for e in a_events], "a released its lease while its task still ran"
    taken = next(e.at for e in store.events if e.kind == "acquired" and e.instance_id == "b")
    assert taken >= max(e.at for e in a_events) + 0.5 - EPS, "b got the lease before a's could have ended"
    assert any("leader task is still running: not releasing the lease; it expires by itself" in r.getMessage()
               for r in caplog.records)


def test_a_plain_leader_task_that_ignores_the_end_is_waited_for_before_contending_again(
        clock: VirtualClock, store: MemoryStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="DistributedMutex")
    seen: list[tuple[str, float]] = []

    def deaf(ctx: LeaderContext) -> None:
        seen.append(("lead", clock()))
        if len(seen) == 1:
            clock.sleep(30)  # ignores ctx.ended for 30 s
        seen.append(("returned", clock()))

    a = mutex(store, "a", deaf)

    async def scenario() -> None:
        async with running(a):
            await asyncio.sleep(1)
            store.break_lease()  # the role ends at once; the task goes on
            await wait_until(lambda: len(seen) >= 3, within=60, what="a leading again")

    clock.run(scenario())
    assert seen[1] == ("returned", pytest.approx(30, abs=EPS))
    assert seen[2][0] == "lead" and seen[2][1] >= seen[1][1], "led again while the old task still ran"
    assert any("waiting for the previous leader task to return" in r.getMessage() for r in caplog.records)


def test_an_object_with_an_async_call_runs_as_an_async_task() -> None:
    """A task written as a class with ``async def __call__`` is awaited on the loop (not run in a
    thread that would drop the coroutine it returns unawaited)."""
    from DistributedMutex.roles import is_async_task

    class Lead:
        async def __call__(self, ctx: object) -> None: ...

    class Plain:
        def __call__(self, ctx: object) -> None: ...

    async def lead(ctx: object) -> None: ...

    assert is_async_task(Lead()) and is_async_task(lead)
    assert not is_async_task(Plain()) and not is_async_task(print)
