"""How the loop makes its storage calls: one long-lived thread for all of them (threads.CallWorker),
a fresh one only while a call hangs; and no polling of a backend that says it will notify
(``Held(watched=True)``), only a slow safety recheck.

The properties a hung call must keep (remembered until it returns, so that a late release or
advance_term never lands after the next acquire) are pinned in test_loop_advance.py and
test_loop_failures.py; these check that the thread that runs the calls does not break them.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading

import pytest

from DistributedMutex import DistributedMutex, Identity
from DistributedMutex.backend import WATCHED_RECHECK, Held, Lease
from DistributedMutex.roles import LeaderContext
from DistributedMutex.testing import MemoryBackend, MemoryStore, VirtualClock, running, wait_until
from DistributedMutex.threads import CallWorker

EPS = 1e-6


def storage_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "calls-under-test"]


def test_calls_one_after_another_share_one_thread_which_ends_on_close() -> None:
    worker = CallWorker("calls-under-test")

    async def scenario() -> set[int]:
        return {await worker.start(threading.get_ident) for _ in range(50)}

    threads = asyncio.run(scenario())
    assert len(threads) == 1, f"{len(threads)} threads for 50 calls made one after another"
    assert len(storage_threads()) == 1
    worker.close()
    for thread in storage_threads():
        thread.join(2)
    assert storage_threads() == [], "the idle thread did not end on close()"


def test_a_hung_call_does_not_hold_up_the_next_one_and_its_thread_ends_when_it_returns() -> None:
    worker = CallWorker("calls-under-test")
    gate = threading.Event()

    def hang() -> int:
        assert gate.wait(10), "never let go"
        return threading.get_ident()

    async def scenario() -> tuple[int, int, int]:
        hung = worker.start(hang)
        await asyncio.wait({hung}, timeout=0.05)  # the loop gives up waiting for it
        assert not hung.done()
        # The next call runs at once, in another thread, while the first one hangs.
        second = await asyncio.wait_for(worker.start(threading.get_ident), timeout=2)
        assert len(storage_threads()) == 2
        gate.set()
        first = await asyncio.wait_for(hung, timeout=2)
        third = await worker.start(threading.get_ident)
        return first, second, third

    first, second, third = asyncio.run(scenario())
    assert first != second
    assert third == second, "the call after the hung one's return did not reuse the idle thread"
    for thread in storage_threads():
        if thread.ident == first:
            thread.join(2)
    assert [t.ident for t in storage_threads()] == [second], "the thread of the hung call outlived it"
    worker.close()


class Watched(MemoryBackend):
    """A MemoryBackend that says, as ZooKeeper's does, that it wakes the loop when who leads may
    change (the memory store wakes every contender's loop on each change); its acquires counted."""

    def __init__(self, store: MemoryStore) -> None:
        super().__init__(store)
        self.acquires: list[float] = []

    def acquire(self, identity: Identity, now: float) -> Lease | Held:
        self.acquires.append(now)
        answer = super().acquire(identity, now)
        return dataclasses.replace(answer, watched=True) if isinstance(answer, Held) else answer


async def lead(ctx: LeaderContext) -> None:
    while await ctx.asleep(0.05):
        pass


@pytest.mark.parametrize("watched", [True, False])
def test_a_watched_follower_does_not_poll_and_takes_over_when_woken(
        clock: VirtualClock, store: MemoryStore, watched: bool) -> None:
    a = DistributedMutex(lead, backend=MemoryBackend(store), identity=Identity("a"))
    backend = Watched(store) if watched else MemoryBackend(store)
    acquires: list[float] = []
    original = backend.acquire

    def counted(identity: Identity, now: float) -> Lease | Held:
        acquires.append(now)
        return original(identity, now)

    backend.acquire = counted  # type: ignore[method-assign]
    b = DistributedMutex(lead, backend=backend, identity=Identity("b"))

    async def scenario() -> float:
        async with running(a):
            await wait_until(lambda: store.holder() == "a", within=1, what="a leading")
            async with running(b):
                quiet = WATCHED_RECHECK * 0.9 - 1  # the recheck is jittered +-10 %
                await asyncio.sleep(quiet)
                polled = len(acquires)
                if watched:
                    assert polled == 1, f"a watched follower asked {polled} times in {quiet:g} s: {acquires}"
                else:  # the memory store's acquire interval is 0.05 s: it polls
                    assert polled > 100
                await asyncio.sleep(WATCHED_RECHECK * 0.2 + 2)  # the safety recheck
                assert len(acquires) >= 2 if watched else True, "no safety recheck"
                a.stop()
                stopped = clock()
                await wait_until(lambda: store.holder() == "b", within=1, what="b taking over")
                return clock() - stopped

    took = clock.run(scenario())
    # Woken by the release: no acquire interval in between (MemoryStore's calls take no time).
    assert took < 0.05, took
