"""LeaderContext.advance_term under the election loop: a call cut short by the end of the role is
waited for before the next acquire; the blocking variant for plain (thread) tasks. On MemoryBackend
in virtual time (see test_loop_leading.py for the store's timing)."""

from __future__ import annotations

import asyncio
import threading

import pytest

from DistributedMutex import DistributedMutex, Identity
from DistributedMutex.backend import Lease
from DistributedMutex.errors import LeaseLostError, StorageUnavailableError
from DistributedMutex.roles import LeaderContext
from DistributedMutex.testing import MemoryBackend, MemoryStore, VirtualClock, running, wait_until

EPS = 1e-6


class GatedAdvance(MemoryBackend):
    """A MemoryBackend whose advance_term hangs until ``gate`` is set (a storage call stuck on a
    socket), then goes to the store: late."""

    def __init__(self, store: MemoryStore, clock: VirtualClock) -> None:
        super().__init__(store)
        self.clock = clock
        self.gate = threading.Event()
        self.called = threading.Event()

    def advance_term(self, lease: Lease, identity: Identity, at_least: int) -> Lease:
        self.called.set()
        self.clock.wait(self.gate)
        return super().advance_term(lease, identity, at_least)


def acquired(store: MemoryStore, who: str) -> list[float]:
    return [e.at for e in store.events if e.kind == "acquired" and e.instance_id == who]


async def break_and_wait_for_the_gate(store: MemoryStore, backend: GatedAdvance, clock: VirtualClock) -> float:
    """Break the lease while advance_term hangs; a must not lead again before that call is over.
    Returns when the gate opened."""
    await wait_until(backend.called.is_set, within=1, what="advance_term called")
    store.break_lease()  # the role ends while the call is in flight
    await asyncio.sleep(1)
    assert acquired(store, "a") == [0.0], "acquired again while the cut-short advance_term could still land"
    opened = clock()
    backend.gate.set()
    await wait_until(lambda: len(acquired(store, "a")) == 2, within=1, what="a leading again")
    return opened


def test_an_advance_term_cancelled_at_the_step_down_is_waited_for_before_the_next_acquire(
        clock: VirtualClock, store: MemoryStore) -> None:
    backend = GatedAdvance(store, clock)
    outcome: list[str] = []

    async def lead(ctx: LeaderContext) -> None:
        if not outcome:
            try:
                await ctx.advance_term(10)
                outcome.append("advanced")
            except asyncio.CancelledError:
                outcome.append("cancelled")
                raise
        while await ctx.asleep(0.05):
            pass

    a = DistributedMutex(lead, backend=backend, identity=Identity("a"))

    async def scenario() -> float:
        async with running(a):
            return await break_and_wait_for_the_gate(store, backend, clock)

    opened = clock.run(scenario())
    assert outcome == ["cancelled"]
    assert acquired(store, "a")[1] >= opened - EPS


# -- the blocking variant, for plain (thread) tasks -------------------------------------------------

def test_a_plain_leader_task_advances_its_term_with_advance_term_blocking(
        clock: VirtualClock, store: MemoryStore) -> None:
    seen: list[tuple[int, int]] = []

    def lead(ctx: LeaderContext) -> None:
        before = ctx.term
        seen.append((before, ctx.advance_term_blocking(before + 5)))
        seen.append((ctx.term, store.term))
        while ctx.sleep(0.05):
            pass

    a = DistributedMutex(lead, backend=MemoryBackend(store), identity=Identity("a"))

    async def scenario() -> None:
        async with running(a):
            await wait_until(lambda: len(seen) == 2, within=1, what="the term advanced")
            assert a.term == 6

    clock.run(scenario())
    assert seen == [(1, 6), (6, 6)]
    assert [e.kind for e in store.events][:2] == ["acquired", "advanced"]


def test_advance_term_blocking_ends_with_the_role_and_the_call_is_waited_for(
        clock: VirtualClock, store: MemoryStore) -> None:
    backend = GatedAdvance(store, clock)
    outcome: list[tuple[str, float]] = []

    def lead(ctx: LeaderContext) -> None:
        if not outcome:
            try:
                ctx.advance_term_blocking(10)
                outcome.append(("advanced", clock()))
            except LeaseLostError:
                outcome.append(("lease lost", clock()))
        while ctx.sleep(0.05):
            pass

    a = DistributedMutex(lead, backend=backend, identity=Identity("a"))

    async def scenario() -> float:
        async with running(a):
            return await break_and_wait_for_the_gate(store, backend, clock)

    opened = clock.run(scenario())
    broken = next(e.at for e in store.events if e.kind == "broken")
    assert outcome == [("lease lost", pytest.approx(broken, abs=EPS))], "it did not end with the role"
    assert acquired(store, "a")[1] >= opened - EPS


def test_advance_term_blocking_gives_up_after_its_timeout(clock: VirtualClock, store: MemoryStore) -> None:
    backend = GatedAdvance(store, clock)
    outcome: list[tuple[str, float]] = []

    def lead(ctx: LeaderContext) -> None:
        started = clock()
        try:
            ctx.advance_term_blocking(10, timeout=0.03)
        except StorageUnavailableError as exc:
            outcome.append((str(exc), clock() - started))
        while ctx.sleep(0.05):
            pass

    a = DistributedMutex(lead, backend=backend, identity=Identity("a"))

    async def scenario() -> None:
        async with running(a):
            await wait_until(lambda: outcome, within=1, what="advance_term_blocking to give up")
            backend.gate.set()

    clock.run(scenario())
    assert outcome == [("advancing the term: no answer within 0.03 s", pytest.approx(0.03, abs=EPS))]


def test_advance_term_blocking_on_the_event_loop_says_to_await_advance_term(
        clock: VirtualClock, store: MemoryStore) -> None:
    errors: list[str] = []

    async def lead(ctx: LeaderContext) -> None:
        try:
            ctx.advance_term_blocking(5)
        except RuntimeError as exc:
            errors.append(str(exc))
        while await ctx.asleep(0.05):
            pass

    a = DistributedMutex(lead, backend=MemoryBackend(store), identity=Identity("a"))

    async def scenario() -> None:
        async with running(a):
            await wait_until(lambda: errors, within=1, what="the leader task")

    clock.run(scenario())
    assert len(errors) == 1 and "await ctx.advance_term(" in errors[0], errors
    assert store.term == 1


def test_advance_term_blocking_on_a_hand_made_context_raises_the_term() -> None:
    ctx = LeaderContext("me", term=7)
    assert ctx.advance_term_blocking(9) == 9 and ctx.term == 9
    assert ctx.advance_term_blocking(3) == 9
