"""The testing kit's MemoryStore and MemoryBackend, called directly: the lease, the term, the
records, the notifications and every fault switch."""

from __future__ import annotations

import asyncio
import math

import pytest

from DistributedMutex import Held, Identity, Lease, LeaseLostError, StorageUnavailableError
from DistributedMutex.testing import MemoryBackend, MemoryStore, VirtualClock
from DistributedMutex.threads import blocking

A, B = Identity("a", "host-a", 1), Identity("b", "host-b", 2)


class Clock:
    """A clock the test sets by hand (for calls made outside any event loop)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(clock: Clock) -> MemoryStore:
    return MemoryStore(clock=clock)


def lease_of(result: Lease | Held) -> Lease:
    assert isinstance(result, Lease), result
    return result


def test_one_holder_its_record_and_a_term_per_lease(clock: Clock, store: MemoryStore) -> None:
    a, b = MemoryBackend(store), MemoryBackend(store)
    assert b.read_leader() is None
    lease = lease_of(a.acquire(A, 0.0))
    assert (lease.term, lease.sent_at, lease.duration, lease.predecessor_until) == (1, 0.0, 0.5, -math.inf)
    held = b.acquire(B, 0.1)
    assert isinstance(held, Held) and held.leader is not None
    assert (held.leader.instance_id, held.leader.term, held.leader.host, held.leader.pid) == ("a", 1, "host-a", 1)
    assert held.leader.is_held and store.holder() == "a"
    clock.now = 0.4
    renewed = a.renew(lease, 0.4)
    assert (renewed.term, renewed.token, renewed.sent_at) == (1, lease.token, 0.4)
    a.release(renewed)
    assert b.read_leader().lease_state == "available" and store.holder() is None  # type: ignore[union-attr]
    assert lease_of(b.acquire(B, 0.5)).term == 2
    assert [e.kind for e in store.events] == ["acquired", "renewed", "released", "acquired"]


def test_an_unrenewed_lease_expires_and_goes_to_the_next(clock: Clock, store: MemoryStore) -> None:
    a, b = MemoryBackend(store), MemoryBackend(store)
    lease = lease_of(a.acquire(A, 0.0))
    clock.now = 0.5
    assert store.leader().lease_state == "expired"  # type: ignore[union-attr]
    with pytest.raises(LeaseLostError, match="expired"):
        a.renew(lease, 0.5)
    taken = lease_of(b.acquire(B, 0.5))
    assert taken.term == 2 and taken.predecessor_until == -math.inf  # it ran out: nobody acts on it
    with pytest.raises(LeaseLostError, match="not the store's lease"):
        a.advance_term(lease, A, 10)


def test_a_broken_lease_tells_the_next_holder_how_long_to_wait(clock: Clock, store: MemoryStore) -> None:
    a, b = MemoryBackend(store), MemoryBackend(store)
    lease = lease_of(a.acquire(A, 0.0))
    clock.now = 0.2
    a.renew(lease, 0.2)  # the store keeps it until 0.7
    assert store.break_lease() and not store.break_lease()
    assert store.leader().lease_state == "broken"  # type: ignore[union-attr]
    with pytest.raises(LeaseLostError, match="was broken"):
        a.renew(lease, 0.25)
    assert lease_of(b.acquire(B, 0.3)).predecessor_until == pytest.approx(0.7)
    # Its own old lease is not a predecessor to wait for: a loop stops acting before it contends.
    store.break_lease()
    assert lease_of(b.acquire(B, 0.4)).predecessor_until == -math.inf


def test_advance_term_raises_it_under_the_lease_only(clock: Clock, store: MemoryStore) -> None:
    a, b = MemoryBackend(store), MemoryBackend(store)
    lease = lease_of(a.acquire(A, 0.0))
    assert a.advance_term(lease, A, 9).term == 9 and a.advance_term(lease, A, 3).term == 9
    assert a.renew(lease, 0.1).term == 9 and store.term == 9
    a.release(lease)
    assert lease_of(b.acquire(B, 0.2)).term == 10


def test_watchers_hear_of_every_change_of_holder_unless_told_not_to(clock: Clock) -> None:
    for notify, expected in ((True, ["b", "b", "a", "a", "b"]), (False, [])):
        store = MemoryStore(clock=clock, notify=notify)
        a, b = MemoryBackend(store), MemoryBackend(store)
        woken: list[str] = []
        a.watch(lambda woken=woken: woken.append("a"))
        b.watch(lambda woken=woken: woken.append("b"))
        lease = lease_of(a.acquire(A, 0.0))  # wakes b (a knows)
        a.release(lease)  # wakes b
        store.break_lease()  # nobody holds it: nobody to wake
        lease = lease_of(b.acquire(B, 0.1))  # wakes a
        store.break_lease()  # wakes both
        b.close()
        a.acquire(A, 0.2)  # b has closed: nobody to wake
        assert woken == expected, (notify, woken)


def test_outage_on_the_store_or_on_one_contender(clock: Clock, store: MemoryStore) -> None:
    a, b = MemoryBackend(store), MemoryBackend(store)
    with store.outage():
        for backend, who in ((a, A), (b, B)):
            with pytest.raises(StorageUnavailableError, match="cannot acquire: the memory store is down"):
                backend.acquire(who, 0.0)
    with a.outage():
        with pytest.raises(StorageUnavailableError, match="this contender cannot reach the memory store"):
            a.read_leader()
        assert isinstance(b.acquire(B, 0.0), Lease)
    assert isinstance(a.acquire(A, 0.1), Held)  # switched back at the end of the block
    a.outage()
    with pytest.raises(StorageUnavailableError):
        a.acquire(A, 0.2)
    a.outage(False)
    assert isinstance(a.acquire(A, 0.3), Held)


def test_slow_and_paused_calls_take_virtual_time() -> None:
    clock = VirtualClock()
    store = MemoryStore(clock=clock)
    a, b = MemoryBackend(store), MemoryBackend(store)

    async def main() -> None:
        with store.slow(0.3), a.slow(0.2):
            lease = await blocking(a.acquire, A, clock())
            assert clock() == pytest.approx(0.5, abs=1e-6), "store and contender delays add up"
        a.pause()
        hung = asyncio.ensure_future(blocking(a.renew, lease, clock()))
        await asyncio.sleep(100)
        assert not hung.done(), "a paused contender's call returned"
        assert isinstance(await blocking(b.acquire, B, clock()), Lease), "its lease ran out meanwhile"
        a.resume()
        with pytest.raises(LeaseLostError):
            await hung  # it lands late: the lease is someone else's
        with a.pause():
            hung = asyncio.ensure_future(blocking(a.read_leader))
            await asyncio.sleep(1)
            assert not hung.done()
        assert (await hung).instance_id == "b"  # type: ignore[union-attr]

    clock.run(main())


def test_default_timing_follows_the_lease(store: MemoryStore) -> None:
    timing = MemoryBackend(store).default_timing()
    assert (timing.lease_duration, timing.renew_interval, timing.acquire_interval, timing.safety_margin) == \
        pytest.approx((0.5, 0.1, 0.05, 0.15))
    timing = MemoryBackend(MemoryStore(lease_duration=10)).default_timing()
    assert (timing.renew_interval, timing.safety_margin) == pytest.approx((2, 3))


def test_loops_sharing_one_backend_are_contenders_of_their_own_and_all_woken(clock: Clock) -> None:
    shared = MemoryBackend(MemoryStore(clock=clock))
    one, two = Identity("same"), Identity("same")  # equal, as two default identities in one process
    woken: list[str] = []
    shared.watch(lambda: woken.append("one"))
    shared.watch(lambda: woken.append("two"))
    lease = lease_of(shared.acquire(one, 0.0))
    assert isinstance(shared.acquire(two, 0.1), Held), "the second loop got the first one's lease"
    shared.release(lease)
    assert woken == ["one", "two", "one", "two"]  # which loop made a change is not known: both hear
    assert lease_of(shared.acquire(two, 0.2)).term == 2
