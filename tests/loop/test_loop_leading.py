"""The election loop leading, on MemoryBackend in virtual time: no service, no real waiting.

The store's default timing: a 0.5 s lease, renewed every 0.1 s, a free lease looked for every
0.05 s, acting until 0.15 s before the lease can end (a 0.35 s acting window). Virtual time does
not pass while a storage call runs, so a deadline is met to the microsecond and can be asserted so.
"""

from __future__ import annotations

import asyncio
import itertools
import logging

import pytest

from DistributedMutex import DistributedMutex, Identity
from DistributedMutex.errors import LeaseLostError
from DistributedMutex.roles import LeaderContext
from DistributedMutex.testing import MemoryBackend, MemoryStore, VirtualClock, running, wait_until

WINDOW = 0.35  # lease 0.5 s - safety margin 0.15 s
EPS = 1e-6


class Acts:
    """What the leader tasks did, with virtual times: (who, "lead" | "stop", term, at)."""

    def __init__(self, clock: VirtualClock) -> None:
        self.clock = clock
        self.log: list[tuple[str, str, int, float]] = []

    def leader(self, who: str):
        async def lead(ctx: LeaderContext) -> None:
            self.log.append((who, "lead", ctx.term, self.clock()))
            try:
                while await ctx.asleep(0.05):
                    ctx.report_progress()
            finally:
                self.log.append((who, "stop", ctx.term, self.clock()))
        return lead

    def times(self, who: str, what: str) -> list[float]:
        return [at for w, event, _, at in self.log if (w, event) == (who, what)]

    def leading(self) -> list[str]:
        """Who leads now (started and not stopped)."""
        return [w for w in {w for w, *_ in self.log} if len(self.times(w, "lead")) > len(self.times(w, "stop"))]

    def intervals(self) -> list[tuple[float, float, str, int]]:
        starts = [(at, w, term) for w, event, term, at in self.log if event == "lead"]
        stops = {(w, term): at for w, event, term, at in self.log if event == "stop"}
        return sorted((at, stops.get((w, term), float("inf")), w, term) for at, w, term in starts)


@pytest.fixture
def acts(clock: VirtualClock) -> Acts:
    return Acts(clock)


def contender(store: MemoryStore, acts: Acts, who: str, **options: object) -> tuple[DistributedMutex, MemoryBackend]:
    backend = MemoryBackend(store)
    return DistributedMutex(acts.leader(who), backend=backend, identity=Identity(who), **options), backend  # type: ignore[arg-type]


def assert_one_at_a_time(acts: Acts) -> None:
    intervals = acts.intervals()
    for earlier, later in itertools.pairwise(intervals):
        assert later[0] >= earlier[1] - EPS, f"two leaders acted at once: {earlier} and {later}"


def test_two_share_a_store_one_leads_stopping_it_hands_over_and_the_term_grows(
        clock: VirtualClock, store: MemoryStore, acts: Acts) -> None:
    a, _ = contender(store, acts, "a")
    b, _ = contender(store, acts, "b")

    async def scenario() -> None:
        async with running(a, b):
            await asyncio.sleep(30)
            assert len(acts.leading()) == 1, acts.log
            first = acts.leading()[0]
            old = a if first == "a" else b
            stopped_at = clock()
            old.stop()
            await wait_until(lambda: acts.leading() not in ([], [first]), within=1, what="a new leader")
            successor = acts.leading()[0]
            assert acts.times(successor, "lead")[-1] - stopped_at < 0.001, "the handover waited for a poll"

    clock.run(scenario())
    terms = [term for *_, term in acts.intervals()]
    assert terms == [1, 2], acts.log
    assert store.term == 2
    assert_one_at_a_time(acts)


def test_the_leader_renews_every_renew_interval_and_keeps_the_lease(
        clock: VirtualClock, store: MemoryStore, acts: Acts) -> None:
    a, _ = contender(store, acts, "a")

    async def scenario() -> None:
        async with running(a):
            await asyncio.sleep(10)

    clock.run(scenario())
    renewals = [e.at for e in store.events if e.kind == "renewed"]
    gaps = [later - earlier for earlier, later in itertools.pairwise(renewals)]
    assert 95 <= len(renewals) <= 100, len(renewals)
    assert all(abs(gap - 0.1) < EPS for gap in gaps), gaps
    assert acts.times("a", "lead") == [0.0] and [e.kind for e in store.events][-1] == "released"


def test_a_leader_cut_off_from_the_store_stops_at_its_local_deadline_before_anyone_else_leads(
        clock: VirtualClock, store: MemoryStore, acts: Acts, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="DistributedMutex")
    a, a_link = contender(store, acts, "a")
    b, _ = contender(store, acts, "b")

    async def scenario() -> None:
        async with running(a):
            await wait_until(lambda: acts.leading() == ["a"], within=1, what="a leading")
            async with running(b):
                await asyncio.sleep(1.03)
                a_link.outage()  # a cannot reach the store; b can
                await wait_until(lambda: acts.leading() == ["b"], within=2, what="b leading")

    clock.run(scenario())
    last_renewal = max(e.at for e in store.events if e.kind == "renewed" and e.instance_id == "a")
    stopped, successor = acts.times("a", "stop")[0], acts.times("b", "lead")[0]
    assert abs(stopped - (last_renewal + WINDOW)) < EPS, "a did not stop at its local deadline"
    assert successor >= last_renewal + 0.5, "b led before a's lease could have ended"
    assert successor - stopped >= 0.15 - EPS  # at least the safety margin apart
    assert any("lost leadership: no renewal within 0.35 s of the last one (last error: cannot renew: this "
               "contender cannot reach the memory store" in r.getMessage() for r in caplog.records)


def test_a_broken_lease_ends_the_leadership_at_once(clock: VirtualClock, store: MemoryStore, acts: Acts) -> None:
    a, _ = contender(store, acts, "a")

    async def scenario() -> float:
        async with running(a):
            await asyncio.sleep(1.02)
            broken_at = clock()
            assert store.break_lease()
            await wait_until(lambda: len(acts.times("a", "lead")) == 2, within=1, what="a leading again")
            return broken_at

    broken_at = clock.run(scenario())
    assert abs(acts.times("a", "stop")[0] - broken_at) < EPS, "a acted on after its lease was broken"
    assert [term for *_, term in acts.intervals()] == [1, 2]


def test_after_a_broken_lease_the_next_holder_waits_until_the_old_one_has_stopped(
        clock: VirtualClock, store: MemoryStore, acts: Acts, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="DistributedMutex")
    a, a_link = contender(store, acts, "a")
    b, _ = contender(store, acts, "b")

    async def scenario() -> None:
        async with running(a):
            await wait_until(lambda: acts.leading() == ["a"], within=1, what="a leading")
            async with running(b):
                await asyncio.sleep(1.02)
                # The storage loses a's lease and a cannot hear of it: a acts until its deadline.
                a_link.outage()
                store.break_lease()
                await wait_until(lambda: acts.leading() == ["b"], within=2, what="b leading")

    clock.run(scenario())
    acquired = next(e.at for e in store.events if e.kind == "acquired" and e.instance_id == "b")
    a_deadline = max(e.at for e in store.events if e.kind == "renewed" and e.instance_id == "a") + WINDOW
    assert acquired < a_deadline - 0.1, "b should have got the lease at once"
    assert acts.times("a", "stop")[0] <= a_deadline + EPS
    assert acts.times("b", "lead")[0] >= a_deadline - EPS, "b acted while a may still have been acting"
    assert_one_at_a_time(acts)
    assert any("the storage lost it; waiting" in r.getMessage() for r in caplog.records)


def test_a_paused_holder_steps_down_at_its_deadline_and_its_late_calls_change_nothing(
        clock: VirtualClock, store: MemoryStore, acts: Acts) -> None:
    a, a_link = contender(store, acts, "a")
    b, _ = contender(store, acts, "b")

    async def scenario() -> None:
        async with running(a):
            await wait_until(lambda: acts.leading() == ["a"], within=1, what="a leading")
            async with running(b):
                await asyncio.sleep(1.02)
                a_link.pause()  # every call of a's hangs: a renewal, then the release
                await wait_until(lambda: acts.leading() == ["b"], within=2, what="b leading")
                await asyncio.sleep(5)
                a_link.resume()  # a's hung renewal and release land now, late
                await asyncio.sleep(1)
                assert store.holder() == "b", "a's late calls took b's lease away"
                assert a.leader is not None and a.leader.instance_id == "b"

    clock.run(scenario())
    last_renewal = max(e.at for e in store.events if e.kind == "renewed" and e.instance_id == "a"
                       and e.at < acts.times("b", "lead")[0])
    assert abs(acts.times("a", "stop")[0] - (last_renewal + WINDOW)) < EPS
    assert acts.times("b", "lead")[0] >= last_renewal + 0.5
    assert_one_at_a_time(acts)


@pytest.mark.parametrize(("delay", "keeps"), [(0.05, True), (0.4, False)])
def test_slow_renewals_keep_the_lease_until_they_end_after_the_deadline(
        clock: VirtualClock, store: MemoryStore, acts: Acts, delay: float, keeps: bool) -> None:
    a, a_link = contender(store, acts, "a")

    async def scenario() -> None:
        async with running(a):
            await asyncio.sleep(1.02)
            with a_link.slow(delay):
                await asyncio.sleep(3)

    clock.run(scenario())
    stopped = acts.times("a", "stop")[0]
    if keeps:
        assert stopped > 4, acts.log  # at shutdown only
    else:  # the renewal sent at 1.1 s answers at 1.5 s: past the deadline of the one sent at 1.0 s
        assert abs(stopped - (1.0 + WINDOW)) < EPS, acts.log


def test_a_lease_that_arrives_too_late_to_act_on_is_given_back(
        clock: VirtualClock, store: MemoryStore, acts: Acts, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="DistributedMutex")
    a, a_link = contender(store, acts, "a")

    async def scenario() -> None:
        with a_link.slow(0.4):  # the answer comes after the acting window has passed
            async with running(a):
                await asyncio.sleep(3)

    clock.run(scenario())
    assert acts.log == []
    assert any("acquired the lease too late to act on it safely" in r.getMessage() for r in caplog.records)
    assert store.holder() is None and [e.kind for e in store.events][-1] == "released"


def test_the_leader_advances_its_term_and_the_next_one_is_higher(clock: VirtualClock, store: MemoryStore) -> None:
    seen: list[tuple[int, int]] = []
    done = asyncio.Event()

    async def lead(ctx: LeaderContext) -> None:
        before = ctx.term
        seen.append((before, await ctx.advance_term(before + 10)))
        seen.append((ctx.term, await ctx.advance_term(3)))  # never lowers it
        done.set()
        await asyncio.Event().wait()

    a = DistributedMutex(lead, backend=MemoryBackend(store), identity=Identity("a"))

    async def scenario() -> None:
        async with running(a):
            await done.wait()
            assert a.term == 11
        async with running(a):
            await wait_until(lambda: len(seen) == 4, within=1, what="the second leadership")

    clock.run(scenario())
    assert seen[:2] == [(1, 11), (11, 11)]
    assert seen[2][0] == 12, "the next leadership's term must be above the advanced one"


def test_advance_term_after_the_role_ended_raises_lease_lost(clock: VirtualClock, store: MemoryStore) -> None:
    kept: list[LeaderContext] = []

    async def lead(ctx: LeaderContext) -> None:
        kept.append(ctx)
        await asyncio.Event().wait()

    a = DistributedMutex(lead, backend=MemoryBackend(store), identity=Identity("a"))

    async def scenario() -> None:
        async with running(a):
            await wait_until(lambda: kept, within=1, what="a leading")
        with pytest.raises(LeaseLostError):
            await kept[0].advance_term(50)

    clock.run(scenario())
    assert store.term == 1


def test_a_leader_context_made_by_hand_serves_to_test_a_task_alone() -> None:
    ctx = LeaderContext("me", term=7)

    async def scenario() -> None:
        assert await ctx.advance_term(9) == 9 and ctx.term == 9
        assert await ctx.asleep(0) and ctx.is_active()
        ctx.ended.set()
        assert not await ctx.asleep(0)

    asyncio.run(scenario())


def test_two_sharing_one_memory_backend_in_real_time_one_leads_and_stopping_it_hands_over() -> None:
    """As the issue puts it: default identities (both <hostname>-<pid>), one backend, real time."""
    backend = MemoryBackend()
    led: list[tuple[int, int]] = []  # (id of the mutex, term)

    def leader_of(key: int):
        async def lead(ctx: LeaderContext) -> None:
            led.append((key, ctx.term))
            while await ctx.asleep(0.05):
                pass
        return lead

    a = DistributedMutex(leader_of(1), backend=backend)
    b = DistributedMutex(leader_of(2), backend=backend)
    assert a.identity == b.identity

    async def scenario() -> None:
        async with running(a, b):
            await wait_until(lambda: led, within=5, what="a leader")
            await asyncio.sleep(1.5)  # three leases long: the other never leads meanwhile
            assert len(led) == 1, led
            first = led[0][0]
            (a if first == 1 else b).stop()
            await wait_until(lambda: len(led) == 2, within=0.5, what="a prompt handover")

    asyncio.run(scenario())
    assert led[1][0] != led[0][0] and led[1][1] > led[0][1], led
