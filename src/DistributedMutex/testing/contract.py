"""The ElectionBackend contract, as tests any backend can run against itself (with pytest).

Subclass ``BackendContract`` in a test module (its name starting with ``Test``) and give it a
fixture ``make_backend``: a callable that returns a new contender, a new backend object, for *one
election per test* (a fresh container, znode path, cluster, ...), at most three per test::

    import pytest
    from DistributedMutex.testing.contract import BackendContract

    class TestMyBackend(BackendContract):
        handover_within = 1.0  # seconds; the bounds are class attributes

        @pytest.fixture
        def make_backend(self, my_server):
            election = my_server.new_election()
            made = []

            def make():
                made.append(MyBackend(my_server.url, election))
                return made[-1]

            yield make
            for backend in made:
                backend.close()

The tests call the backend as the election loop does (acquire, renew, advance_term, release,
read_leader) from one thread, with each contender's own Identity, and check:

    one holder at a time     no two contenders hold leases whose intervals
                             [sent_at, sent_at + duration) overlap
    acquire, renew, release  a Lease, renewed with its term; the others are told Held; a released
                             lease goes to another contender
    terms grow               every new holder has a higher term than the one before
    promptly                 a released lease is taken within ``handover_within``
    read_leader              names the holder and its term (from every contender, eventually)
    loss                     renew and advance_term of a lease someone else took raise LeaseLostError
    advance_term             raises the term to at least the number asked for, never lowers it;
                             the next holder's term is higher still

This module imports nothing but the library, so that importing it never needs pytest's plugins.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

from DistributedMutex.backend import ElectionBackend, Held, Identity, LeaderRecord, Lease
from DistributedMutex.errors import LeaseLostError, StorageUnavailableError
from DistributedMutex.timing import ElectionTiming

T = TypeVar("T")
MakeBackend = Callable[[], ElectionBackend]
POLL = 0.01  # seconds between two rounds of acquire attempts


class Contenders:
    """Backends of one election, each with an Identity of its own."""

    def __init__(self, make_backend: MakeBackend, count: int) -> None:
        self.backends = [make_backend() for _ in range(count)]
        # Distinct pids too: a backend may recognise its own process by (instance_id, pid).
        self.identities = [Identity(f"contender-{i}", "contract-host", 40_000 + i) for i in range(count)]

    def holder(self, within: float, *, skip: Iterable[int] = ()) -> tuple[int, Lease]:
        """Poll every contender's acquire (but ``skip``'s) until one gets a Lease: (index, lease)."""
        skipped = set(skip)

        def attempt() -> tuple[int, Lease] | None:
            for i, backend in enumerate(self.backends):
                if i not in skipped:
                    try:
                        result = backend.acquire(self.identities[i], time.monotonic())
                    except StorageUnavailableError:
                        continue
                    if isinstance(result, Lease):
                        return i, result
            return None

        who = f"contenders {sorted(set(range(len(self.backends))) - skipped)}"
        return eventually(attempt, within, f"none of {who} got the lease")


def eventually(attempt: Callable[[], T | None], within: float, failure: str) -> T:
    """``attempt()`` every POLL seconds until it returns something; AssertionError after ``within``."""
    deadline = time.monotonic() + within
    while True:
        result = attempt()
        if result is not None:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{failure} within {within:g} s")
        time.sleep(POLL)


def raises(error: type[BaseException], call: Callable[[], object], what: str) -> BaseException:
    try:
        outcome = call()
    except error as exc:
        return exc
    raise AssertionError(f"{what}: expected {error.__name__}, got {outcome!r}")


class BackendContract:
    """The contract's tests; subclass it with a ``make_backend`` fixture (see the module)."""

    first_holder_within = 10.0  # seconds for an election to give somebody the lease, or to name them
    handover_within = 2.0  # seconds for a released lease to be taken by another contender (the
    # promptness test; the others wait for a new holder up to first_holder_within)
    observe_for = 1.0  # seconds the one-holder test watches the contenders for

    def test_is_an_election_backend(self, make_backend: MakeBackend) -> None:
        backend = make_backend()
        assert isinstance(backend, ElectionBackend), f"{backend!r} lacks some of ElectionBackend's methods"
        assert isinstance(backend.name, str) and backend.name
        assert isinstance(backend.default_timing(), ElectionTiming)
        backend.watch(lambda: None)

    def test_one_holder_at_a_time(self, make_backend: MakeBackend) -> None:
        contenders = Contenders(make_backend, 3)
        held: dict[int, Lease] = {}
        intervals: list[tuple[float, float, int]] = []  # (sent_at, sent_at + duration, contender)
        started = time.monotonic()
        end = started + self.first_holder_within
        while time.monotonic() < end:
            for i, backend in enumerate(contenders.backends):
                try:
                    if i in held:
                        lease = backend.renew(held[i], time.monotonic())
                    else:
                        result = backend.acquire(contenders.identities[i], time.monotonic())
                        if not isinstance(result, Lease):
                            continue
                        lease = result
                except LeaseLostError:
                    held.pop(i, None)
                    continue
                except StorageUnavailableError:
                    continue
                if not intervals:  # watch for observe_for from the first lease on
                    end = time.monotonic() + self.observe_for
                held[i] = lease
                intervals.append((lease.sent_at, lease.sent_at + lease.duration, i))
            time.sleep(POLL)
        assert intervals, f"nobody got the lease within {self.first_holder_within:g} s"
        for a, b in itertools.combinations(sorted(intervals), 2):
            assert a[2] == b[2] or b[0] >= a[1], (
                f"contenders {a[2]} and {b[2]} held the lease at once: "
                f"[{a[0] - started:.3f}, {a[1] - started:.3f}) and [{b[0] - started:.3f}, {b[1] - started:.3f}) s")

    def test_acquire_renew_release(self, make_backend: MakeBackend) -> None:
        contenders = Contenders(make_backend, 2)
        i, lease = contenders.holder(self.first_holder_within)
        assert lease.term > 0 and lease.duration > 0 and lease.token, lease
        assert lease.sent_at <= time.monotonic(), f"a lease sent in the future: {lease}"
        renewed = contenders.backends[i].renew(lease, time.monotonic())
        assert (renewed.term, renewed.token) == (lease.term, lease.token), (lease, renewed)
        assert renewed.sent_at >= lease.sent_at and renewed.duration > 0, (lease, renewed)
        other = 1 - i
        result = contenders.backends[other].acquire(contenders.identities[other], time.monotonic())
        assert isinstance(result, Held), f"a second contender got {result!r} while {i} holds the lease"
        contenders.backends[i].release(renewed)
        j, successor = contenders.holder(self.first_holder_within, skip={i})
        assert j == other and successor.term > lease.term

    def test_terms_grow_with_every_new_holder(self, make_backend: MakeBackend) -> None:
        contenders = Contenders(make_backend, 3)
        i, lease = contenders.holder(self.first_holder_within)
        leases = [(i, lease)]
        for _ in range(3):
            contenders.backends[i].release(lease)
            i, lease = contenders.holder(self.first_holder_within, skip={i})
            leases.append((i, lease))
        terms = [lease.term for _, lease in leases]
        assert terms == sorted(set(terms)), f"terms did not grow with every holder: {leases}"

    def test_a_released_lease_is_taken_promptly(self, make_backend: MakeBackend) -> None:
        contenders = Contenders(make_backend, 2)
        i, lease = contenders.holder(self.first_holder_within)
        other = 1 - i
        # The other contends already (it joined a line, if the backend keeps one).
        assert isinstance(contenders.backends[other].acquire(contenders.identities[other], time.monotonic()), Held)
        released = time.monotonic()
        contenders.backends[i].release(lease)
        _, successor = contenders.holder(self.first_holder_within, skip={i})
        took = time.monotonic() - released
        assert successor.term > lease.term
        assert took <= self.handover_within, f"the released lease was taken after {took:.2f} s"

    def test_read_leader_names_the_holder(self, make_backend: MakeBackend) -> None:
        contenders = Contenders(make_backend, 2)
        i, lease = contenders.holder(self.first_holder_within)
        name = contenders.identities[i].instance_id
        for k, backend in enumerate(contenders.backends):
            def names_holder(backend: ElectionBackend = backend) -> LeaderRecord | None:
                record = backend.read_leader()
                return record if record is not None and (record.instance_id, record.term) == (name, lease.term) \
                    and record.is_held else None
            eventually(names_holder, self.first_holder_within, f"contender {k}'s read_leader never named {name} "
                                                           f"(term {lease.term}) as the holder")
        contenders.backends[i].release(lease)

        def forgot_holder() -> bool | None:
            record = contenders.backends[1 - i].read_leader()
            return True if record is None or not (record.instance_id == name and record.is_held) else None
        eventually(forgot_holder, self.first_holder_within, f"read_leader still says {name} holds a released lease")

    def test_renew_after_loss_raises_lease_lost(self, make_backend: MakeBackend) -> None:
        contenders = Contenders(make_backend, 2)
        i, lease = contenders.holder(self.first_holder_within)
        contenders.backends[i].release(lease)
        j, successor = contenders.holder(self.first_holder_within, skip={i})
        old, identity = contenders.backends[i], contenders.identities[i]
        raises(LeaseLostError, lambda: old.renew(lease, time.monotonic()), "renewing a lease someone else took")
        raises(LeaseLostError, lambda: old.advance_term(lease, identity, successor.term + 10),
               "advancing the term of a lease someone else took")
        renewed = contenders.backends[j].renew(successor, time.monotonic())
        assert renewed.term == successor.term, "the old holder's attempts changed the new holder's term"

    def test_advance_term(self, make_backend: MakeBackend) -> None:
        contenders = Contenders(make_backend, 2)
        i, lease = contenders.holder(self.first_holder_within)
        backend, identity = contenders.backends[i], contenders.identities[i]
        advanced = backend.advance_term(lease, identity, lease.term + 10)
        assert advanced.term >= lease.term + 10, f"asked for a term >= {lease.term + 10}, got {advanced}"
        renewed = backend.renew(advanced, time.monotonic())
        assert renewed.term == advanced.term, (advanced, renewed)
        again = backend.advance_term(renewed, identity, 1)
        assert again.term >= advanced.term, f"advance_term lowered the term: {advanced.term} -> {again.term}"
        backend.release(again)
        # Whoever leads next, even this contender again (a Raft peer may win the next election).
        _, successor = contenders.holder(self.first_holder_within)
        assert successor.term > again.term, f"the next holder's term {successor.term} <= {again.term}"
