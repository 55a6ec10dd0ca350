"""The testing kit's VirtualClock: time that jumps only when everything waits, threads included."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from DistributedMutex import ConfigurationError, DistributedMutex, Identity, StorageRejectedError
from DistributedMutex.roles import LeaderContext
from DistributedMutex.testing import MemoryBackend, MemoryStore, VirtualClock
from DistributedMutex.threads import blocking


def test_an_hour_of_sleeping_takes_no_real_time() -> None:
    clock = VirtualClock()

    async def hour() -> float:
        await asyncio.sleep(3600)
        return asyncio.get_running_loop().time()

    started = time.monotonic()
    assert clock.run(hour(), timeout=None) == pytest.approx(3600, abs=1e-6)
    assert clock() == pytest.approx(3600, abs=1e-6)
    assert time.monotonic() - started < 1


def test_timers_fire_in_order_at_their_moments() -> None:
    clock = VirtualClock(start=100.0)
    fired: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await asyncio.sleep(seconds)
        fired.append((name, clock()))

    async def main() -> None:
        await asyncio.gather(sleeper("c", 3), sleeper("a", 1), sleeper("b", 2))

    clock.run(main())
    assert [name for name, _ in fired] == ["a", "b", "c"]
    assert [at for _, at in fired] == pytest.approx([101, 102, 103], abs=1e-6)


def test_time_stands_still_while_a_thread_works() -> None:
    clock = VirtualClock()
    order: list[str] = []

    def work() -> float:
        time.sleep(0.05)  # real work, in real time
        order.append("thread done")
        return clock()

    async def timer() -> None:
        await asyncio.sleep(0.001)
        order.append("timer")

    async def main() -> float:
        seen, _ = await asyncio.gather(blocking(work), timer())
        return seen

    assert clock.run(main()) == 0.0, "virtual time moved on while the thread worked"
    assert order == ["thread done", "timer"]


def test_to_thread_is_known_to_the_clock_too() -> None:
    clock = VirtualClock()

    async def main() -> float:
        sleeper = asyncio.ensure_future(asyncio.sleep(0.001))
        seen = await asyncio.to_thread(lambda: (time.sleep(0.03), clock())[1])
        await sleeper
        return seen

    assert clock.run(main()) == 0.0


def test_a_thread_sleeps_and_waits_in_virtual_time() -> None:
    clock = VirtualClock()
    event = threading.Event()

    def sleeps() -> float:
        clock.sleep(10)
        return clock()

    def waits() -> tuple[bool, float]:
        return clock.wait(event, timeout=100), clock()

    async def main() -> tuple[float, tuple[bool, float]]:
        waiting = asyncio.ensure_future(blocking(waits))
        slept = await blocking(sleeps)
        await asyncio.sleep(5)
        event.set()
        return slept, await waiting

    slept, (was_set, at) = clock.run(main())
    assert slept == pytest.approx(10, abs=1e-6)
    assert was_set and at == pytest.approx(15, abs=1e-6)


def test_advance_is_a_frozen_process() -> None:
    clock = VirtualClock()
    fired: list[float] = []

    async def main() -> None:
        timers = [asyncio.ensure_future(asyncio.sleep(s)) for s in (1, 2)]
        for timer in timers:
            timer.add_done_callback(lambda _: fired.append(clock()))
        await asyncio.sleep(0)
        clock.advance(5)  # nothing ran for 5 s: both timers are late
        await asyncio.gather(*timers)

    clock.run(main())
    assert fired == pytest.approx([5, 5], abs=1e-6)
    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-1)


def test_a_wait_for_nothing_ends_at_the_virtual_timeout() -> None:
    clock = VirtualClock()
    started = time.monotonic()
    with pytest.raises(TimeoutError, match="not done after 5 s of virtual time"):
        clock.run(asyncio.Event().wait(), timeout=5)
    assert clock() == pytest.approx(5, abs=1e-6) and time.monotonic() - started < 1


def test_a_mutex_given_another_clock_than_its_loops_is_refused() -> None:
    clock = VirtualClock()

    async def lead(ctx: LeaderContext) -> None:
        await asyncio.Event().wait()

    mutex = DistributedMutex(lead, backend=MemoryBackend(MemoryStore(clock=clock)), identity=Identity("a"),
                             clock=time.monotonic)
    with pytest.raises(ConfigurationError, match="clock: the event loop runs on a VirtualClock"):
        clock.run(mutex.run_async())


def test_a_store_on_another_clock_than_the_loops_is_refused() -> None:
    clock = VirtualClock()

    async def lead(ctx: LeaderContext) -> None:
        await asyncio.Event().wait()

    mutex = DistributedMutex(lead, backend=MemoryBackend(MemoryStore()), identity=Identity("a"))
    with pytest.raises(StorageRejectedError, match="pass the same one"):
        clock.run(mutex.run_async())
