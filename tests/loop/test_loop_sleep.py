"""``ctx.sleep`` / ``ctx.asleep`` past the local deadline: never True there, False only once the
role has ended, and in between they wait for the election loop's word (a renewal in flight moves
the deadline on), bounded. In virtual time (see test_loop_leading.py for the store's timing)."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from DistributedMutex import DistributedMutex, Identity
from DistributedMutex.backend import Lease
from DistributedMutex.roles import LeaderContext
from DistributedMutex.testing import MemoryBackend, MemoryStore, VirtualClock, running, wait_until
from DistributedMutex.threads import blocking

EPS = 1e-6


async def sleep_in(kind: str, ctx: LeaderContext, seconds: float) -> tuple[bool, float]:
    """ctx.sleep in a thread of its own (a plain task's), or ctx.asleep on the loop: what it
    answered, and when."""
    if kind == "plain":
        answer = await blocking(ctx.sleep, seconds)
    else:
        answer = await ctx.asleep(seconds)
    return answer, ctx.clock()


# -- a hand-made context: the test plays the election loop -------------------------------------------

@pytest.mark.parametrize("kind", ["plain", "async"])
def test_past_the_deadline_a_renewal_that_lands_keeps_the_role(clock: VirtualClock, kind: str) -> None:
    ctx = LeaderContext("me", 1, clock=clock, acting_until=1.0)

    async def scenario() -> tuple[bool, float]:
        sleeping = asyncio.ensure_future(sleep_in(kind, ctx, 1.5))  # wakes at 1.5, past the deadline
        await asyncio.sleep(1.6)
        assert not sleeping.done(), f"{kind} sleep answered {sleeping.result()}, past the deadline before the loop did"
        ctx.acting_until = 2.0  # the renewal that was in flight lands: the role goes on
        return await sleeping

    assert clock.run(scenario()) == (True, pytest.approx(1.6, abs=EPS))


@pytest.mark.parametrize("kind", ["plain", "async"])
def test_past_the_deadline_the_sleep_is_false_once_the_loop_ends_the_role(clock: VirtualClock, kind: str) -> None:
    ctx = LeaderContext("me", 1, clock=clock, acting_until=1.0)

    async def scenario() -> tuple[bool, float]:
        sleeping = asyncio.ensure_future(sleep_in(kind, ctx, 1.5))
        await asyncio.sleep(1.7)
        ctx.ended.set()  # the loop steps down
        return await sleeping

    assert clock.run(scenario()) == (False, pytest.approx(1.7, abs=EPS))


@pytest.mark.parametrize("kind", ["plain", "async"])
def test_with_no_word_from_a_loop_the_sleep_gives_up_after_its_bound(
        clock: VirtualClock, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="DistributedMutex")
    ctx = LeaderContext("me", 1, clock=clock, acting_until=1.0)  # made by hand: no loop will answer

    async def scenario() -> tuple[bool, float]:
        return await sleep_in(kind, ctx, 1.5)

    assert clock.run(scenario()) == (False, pytest.approx(1.0 + ctx.word_within, abs=EPS))
    assert not ctx.ended.is_set()
    assert any("no word from the election loop" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("kind", ["plain", "async"])
def test_a_deadline_moved_but_still_past_is_not_enough(clock: VirtualClock, kind: str) -> None:
    """True only while before the deadline: a renewal whose window is over already does not count."""
    ctx = LeaderContext("me", 1, clock=clock, acting_until=1.0)

    async def scenario() -> tuple[bool, float]:
        sleeping = asyncio.ensure_future(sleep_in(kind, ctx, 1.5))
        await asyncio.sleep(1.6)
        ctx.acting_until = 1.55
        await asyncio.sleep(0.1)
        assert not sleeping.done(), "answered although still past the deadline"
        ctx.ended.set()
        return await sleeping

    assert clock.run(scenario()) == (False, pytest.approx(1.7, abs=EPS))


# -- under the election loop: the reviewer's race, made deterministic -----------------------------

@pytest.mark.parametrize("kind", ["plain", "async"])
def test_a_renewal_landing_at_the_deadline_does_not_leave_the_lease_without_a_leader_task(
        clock: VirtualClock, kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """A renewal is in flight at the deadline (0.35 s); the event loop is held up (a busy app) while
    the renewal's answer arrives and the leader task's sleep ends past the deadline; the loop then
    takes the renewal (sent before the deadline) and leads on. The task must lead on with it: a sleep
    that said False there left the lease held with no leader task, for good."""
    caplog.set_level(logging.INFO, logger="DistributedMutex")
    store = MemoryStore(clock=clock)
    renewed = threading.Event()  # a renewal came back from the store

    class Renewals(MemoryBackend):
        def renew(self, lease: Lease, now: float) -> Lease:
            try:
                return super().renew(lease, now)
            finally:
                renewed.set()

    backend = Renewals(store)
    rounds: list[float] = []
    returned: list[tuple[float, bool]] = []

    def plain(ctx: LeaderContext) -> None:
        while ctx.sleep(0.17):  # wakes at 0.17, 0.34 (just before the deadline), ...
            rounds.append(clock())
        returned.append((clock(), ctx.ended.is_set()))

    async def in_async(ctx: LeaderContext) -> None:
        try:
            while await ctx.asleep(0.17):
                rounds.append(clock())
            returned.append((clock(), ctx.ended.is_set()))
        except asyncio.CancelledError:
            returned.append((clock(), ctx.ended.is_set()))
            raise

    a = DistributedMutex(plain if kind == "plain" else in_async, backend=backend, identity=Identity("a"))

    older = set(threading.enumerate())  # (other tests' threads, some of them hung for good)

    def ours(name: str) -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == name and t not in older]

    async def scenario() -> float:
        async with running(a):
            await wait_until(lambda: store.holder() == "a", within=1, what="a leading")
            backend.pause()  # the renewal sent at 0.1 hangs
            renewed.clear()
            await asyncio.sleep(0.3 - clock())
            # The event loop is held up from 0.3 to 0.36: past the deadline, the renewal's answer
            # comes in (the lease lasts until 0.5 at the store), and the task's sleep ends.
            clock.advance(0.06)
            backend.resume()
            # (real time, the event loop held up) the storage calls run in a worker thread that
            # outlives them: wait for the call itself
            assert renewed.wait(5), "the renewal did not come back"
            for thread in ours("leader-task"):
                thread.join(0.2)  # (real time) time for a plain task to return, if its sleep let it
            await asyncio.sleep(1)
            assert a.role.value == "leader"
            return clock()

    stopped_at = clock.run(scenario())
    messages = [r.getMessage() for r in caplog.records]
    assert "leader task returned; keeping the lease until stopped" not in messages
    assert returned == [(pytest.approx(stopped_at, abs=EPS), True)], "the leader task returned before the role ended"
    assert any(at > 0.36 for at in rounds), rounds
