"""Watching who leads without contending (DistributedMutex.watching): the same record from every
backend, each change once, told at once where the backend notifies, by polling where it cannot.

The in-memory backend notifies its watchers, like ZooKeeper watches, NOTIFY or pub/sub: with a
polling interval of 30 s, a change seen within a second was seen through ``watch``. A backend that
cannot notify (the blob lease) is stood in for by one whose ``watch`` does nothing. The real
backends are observed by ``distributed-mutex status`` in tests/test_run_command.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import pytest

from DistributedMutex import (
    ConfigurationError,
    DistributedMutex,
    Identity,
    LeaderObserver,
    ObservedLeader,
    observe,
    observe_async,
)
from DistributedMutex.roles import LeaderContext
from DistributedMutex.testing import MemoryBackend, MemoryStore
from harness.processes import wait_until


class Deaf(MemoryBackend):
    """A backend that can only be polled."""

    def watch(self, wake: Callable[[], None]) -> None:
        pass


def lead_until_stopped(ctx: LeaderContext) -> None:
    while ctx.sleep(0.05):
        pass


def start(store: MemoryStore, name: str) -> tuple[DistributedMutex, threading.Thread]:
    mutex = DistributedMutex(lead_until_stopped, backend=MemoryBackend(store), identity=Identity(name, "host-" + name))
    thread = threading.Thread(target=lambda: asyncio.run(mutex.run_async()), daemon=True)
    thread.start()
    return mutex, thread


class Seen:
    """What an observer yielded, with when (monotonic)."""

    def __init__(self) -> None:
        self.states: list[tuple[float, ObservedLeader]] = []

    def leaders(self) -> list[str | None]:
        return [state.instance_id for _, state in self.states]

    def first(self, who: str | None, term: int | None = None) -> float:
        found = [at for at, s in self.states if s.instance_id == who and (term is None or s.term == term)]
        return found[0] if found else 0.0


def handover(store: MemoryStore, seen: Seen) -> list[float]:
    """a leads, stops; b leads: how long after each change the observer said so."""
    wait_until(lambda: seen.states, 5, "the observer gave no first state")
    assert seen.states[0][1] == ObservedLeader("memory", None, 0), "nobody led yet"
    a, a_thread = start(store, "a")
    wait_until(lambda: store.holder() == "a", 5, "a did not lead")
    a_led = time.monotonic()
    wait_until(lambda: seen.first("a", 1), 5, "the observer did not see a lead")
    b, b_thread = start(store, "b")
    a.stop()
    a_thread.join(5)
    wait_until(lambda: store.holder() == "b", 5, "b did not take over")
    b_led = time.monotonic()
    wait_until(lambda: seen.first("b", 2), 5, "the observer did not see b lead")
    b.stop()
    b_thread.join(5)
    leading = [s for _, s in seen.states if s.leading]
    assert [(s.instance_id, s.term, s.host) for s in leading] == [("a", 1, "host-a"), ("b", 2, "host-b")]
    assert all(s.pid is not None and s.since is not None for s in leading)
    return [seen.first("a", 1) - a_led, seen.first("b", 2) - b_led]


def test_the_blocking_observer_is_told_of_each_change_at_once_where_the_backend_notifies() -> None:
    store = MemoryStore(lease_duration=0.5)
    observer = LeaderObserver(MemoryBackend(store), interval=30)
    seen = Seen()

    def collect() -> None:
        for state in observer.changes():
            seen.states.append((time.monotonic(), state))
    threading.Thread(target=collect, daemon=True).start()
    try:
        latencies = handover(store, seen)
    finally:
        observer.close()
    assert max(latencies) < 1.0, f"seen {latencies} s after the changes: not through watch()"


def test_the_async_observer_yields_the_same_changes() -> None:
    store = MemoryStore(lease_duration=0.5)
    seen = Seen()

    async def collect(stop: asyncio.Event) -> None:
        async for state in observe_async(MemoryBackend(store), interval=30):
            seen.states.append((time.monotonic(), state))
            if stop.is_set():
                break

    async def main() -> list[float]:
        stop = asyncio.Event()
        task = asyncio.ensure_future(collect(stop))
        latencies = await asyncio.to_thread(handover, store, seen)
        stop.set()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        return latencies

    latencies = asyncio.run(main())
    assert max(latencies) < 1.0, f"seen {latencies} s after the changes: not through watch()"


def test_a_backend_that_cannot_notify_is_polled_every_interval() -> None:
    store = MemoryStore(lease_duration=0.5)
    seen = Seen()
    iterator = observe(Deaf(store), interval=0.2)

    def collect() -> None:
        for state in iterator:
            seen.states.append((time.monotonic(), state))
    threading.Thread(target=collect, daemon=True).start()
    latencies = handover(store, seen)
    assert max(latencies) < 0.2 + 0.5, f"seen {latencies} s after the changes, polling every 0.2 s"


def test_an_outage_yields_nothing_and_the_observer_goes_on_after_it() -> None:
    store = MemoryStore(lease_duration=0.5)
    observer = LeaderObserver(Deaf(store), interval=0.05)
    seen = Seen()

    def collect() -> None:
        for state in observer.changes():
            seen.states.append((time.monotonic(), state))
    with store.outage():
        threading.Thread(target=collect, daemon=True).start()
        time.sleep(0.3)  # several looks fail meanwhile: that is what is tested
        assert seen.states == []
    wait_until(lambda: seen.states, 2, "no state once the store came back")
    assert seen.leaders() == [None]
    observer.close()


@pytest.mark.parametrize("interval", [0, -1, float("nan"), True, "1"])
def test_a_bad_interval_is_refused_naming_it(interval: object) -> None:
    with pytest.raises(ConfigurationError, match=r"^interval: must be from 0.01 to 3600 seconds"):
        LeaderObserver(MemoryBackend(), interval=interval)  # type: ignore[arg-type]


def test_a_backend_that_is_none_is_refused_naming_it() -> None:
    with pytest.raises(ConfigurationError, match=r"^backend: must be an ElectionBackend, got NoneType"):
        LeaderObserver(None)  # type: ignore[arg-type]
