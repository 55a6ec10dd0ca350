"""An election backend in process memory: contenders in one process compete as processes would.

    store = MemoryStore()                              # one election: a lease, a term, a holder
    a = DistributedMutex(lead, backend=MemoryBackend(store), identity=Identity("a"))
    b = DistributedMutex(lead, backend=MemoryBackend(store), identity=Identity("b"))

A contender is one MemoryBackend used by one DistributedMutex. Several DistributedMutex may also
share one MemoryBackend (``backend = MemoryBackend()``, a store of its own): each is a contender
of its own then (told apart by its Identity object), but the backend's switches are for them all.

The store keeps a lease of ``lease_duration`` (0.5 s by default) on its clock, a fencing term that
grows with every new lease (and with ``advance_term``), and tells every contender's loop
(``watch``) when who leads changes, so a graceful handover takes no polling interval.

Switches for what real storage does, on the store (every contender) or on one MemoryBackend (one
contender's link to the store); each returns a context manager that switches it back::

    with store.outage(): ...        every call raises StorageUnavailableError
    with backend.slow(0.3): ...     this contender's calls take 0.3 s more
    with backend.pause(): ...       this contender's calls hang until the block ends (or resume())
    store.break_lease()             the lease is taken away from its holder (as `az storage blob
                                    lease break` does): its next renewal raises LeaseLostError
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime

from DistributedMutex.backend import Held, Identity, LeaderRecord, Lease, utc_now
from DistributedMutex.errors import LeaseLostError, StorageRejectedError, StorageUnavailableError
from DistributedMutex.roles import WaitingClock
from DistributedMutex.testing.clock import current_clock
from DistributedMutex.timing import ElectionTiming


@dataclass(frozen=True)
class StoreEvent:
    """One change of the store, for tests to look at (``MemoryStore.events``)."""

    at: float  # the store's clock
    kind: str  # "acquired", "renewed", "released", "broken", "advanced"
    instance_id: str
    term: int


@dataclass
class _Holding:
    """The lease as the store keeps it."""

    identity: Identity
    contender: tuple[int, int]  # id() of the holder's MemoryBackend and of its Identity object
    token: str
    term: int
    expires: float  # the store's clock
    acquired_at: datetime
    state: str = "leased"  # or "released", "broken"


@dataclass
class _Faults:
    outage: bool = False
    delay: float = 0.0
    resumed: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.resumed.set()


class MemoryStore:
    """The shared state of one election, thread-safe; hand each contender a MemoryBackend of it.

    ``clock``: the store's time, in which leases expire and switched-on delays pass. Give it the
    clock DistributedMutex runs on: time.monotonic (the default) or a VirtualClock.
    ``notify``: tell the contenders' loops of every change of holder (as ZooKeeper or Raft do);
    False: they find out by polling only (as with the blob lease).
    """

    def __init__(self, *, lease_duration: float = 0.5, clock: Callable[[], float] = time.monotonic,
                 notify: bool = True) -> None:
        self.lease_duration = lease_duration
        self.clock = clock
        self.notify = notify
        self.events: list[StoreEvent] = []
        self._lock = threading.RLock()
        self._term = 0
        self._holding: _Holding | None = None
        self._serial = itertools.count(1)
        self._wakes: dict[int, list[Callable[[], None]]] = {}  # MemoryBackend id() -> its loops' wake()
        self._faults = _Faults()

    # -- what tests look at ------------------------------------------------------------------

    @property
    def term(self) -> int:
        """The highest term handed out so far (0: none)."""
        return self._term

    def leader(self) -> LeaderRecord | None:
        """Who holds (or last held) the lease, as ``read_leader`` says it, without any switch."""
        with self._lock:
            return self._record()

    def holder(self) -> str | None:
        """The instance_id of the holder of a lease that has not ended, else None."""
        with self._lock:
            record = self._record()
            return record.instance_id if record is not None and record.is_held else None

    # -- switches ----------------------------------------------------------------------------

    def outage(self, on: bool = True) -> _Switch:
        """Every contender's calls raise StorageUnavailableError (after any delay), until off."""
        return _switch(self._faults, "outage", on)

    def slow(self, seconds: float) -> _Switch:
        """Every contender's calls take ``seconds`` more (on the store's clock); 0: no more."""
        return _switch(self._faults, "delay", seconds)

    def break_lease(self) -> bool:
        """Take the lease away from its holder; False if nobody held one. The holder learns it at
        its next renewal (at once, if ``notify``); the next holder's Lease says until when the
        old one may still act (``predecessor_until``), and its loop waits that long."""
        with self._lock:
            holding = self._holding
            if holding is None or holding.state != "leased" or self.clock() >= holding.expires:
                return False
            holding.state = "broken"
            self._event("broken", holding)
        self._wake_all()
        return True

    # -- for MemoryBackend -------------------------------------------------------------------

    def _acquire(self, contender: tuple[int, int], identity: Identity, now: float) -> Lease | Held:
        with self._lock:
            t = self.clock()
            old = self._holding
            if old is not None and old.state == "leased" and t < old.expires and old.contender != contender:
                return Held(self._record())
            # A broken lease's holder may act until its own deadline: the new one waits that long.
            # Not for its own old lease: a loop steps down before it contends again.
            predecessor_until = -math.inf
            if old is not None and old.state == "broken" and old.contender != contender:
                predecessor_until = old.expires
            self._term += 1
            self._holding = _Holding(identity, contender, f"{identity.instance_id}#{next(self._serial)}",
                                     self._term, t + self.lease_duration, utc_now())
            self._event("acquired", self._holding)
            lease = Lease(self._term, self._holding.token, now, self.lease_duration, predecessor_until)
        self._wake_all(but=contender[0])
        return lease

    def _renew(self, lease: Lease, now: float) -> Lease:
        with self._lock:
            holding = self._held(lease)
            holding.expires = self.clock() + self.lease_duration
            self._event("renewed", holding)
            return Lease(holding.term, holding.token, now, self.lease_duration)

    def _advance_term(self, lease: Lease, at_least: int) -> Lease:
        with self._lock:
            holding = self._held(lease)
            if at_least > holding.term:
                self._term = holding.term = max(self._term, at_least)
                self._event("advanced", holding)
            return replace(lease, term=holding.term)

    def _release(self, lease: Lease) -> None:
        with self._lock:
            holding = self._holding
            if holding is None or holding.token != lease.token or holding.state != "leased":
                return  # not ours (any more): nothing to give back
            holding.state = "released"
            self._event("released", holding)
        self._wake_all(but=holding.contender[0])

    def _held(self, lease: Lease) -> _Holding:
        """The holding of ``lease`` if it lasts, else LeaseLostError (call with the lock held)."""
        holding = self._holding
        if holding is None or holding.token != lease.token:
            raise LeaseLostError(f"lease {lease.token} is not the store's lease any more")
        if holding.state != "leased":
            raise LeaseLostError(f"lease {lease.token} was {holding.state}")
        if self.clock() >= holding.expires:
            raise LeaseLostError(f"lease {lease.token} expired")
        return holding

    def _record(self) -> LeaderRecord | None:
        holding = self._holding
        if holding is None:
            return None
        state = {"released": "available", "broken": "broken"}.get(holding.state, "leased")
        if state == "leased" and self.clock() >= holding.expires:
            state = "expired"
        who = holding.identity
        return LeaderRecord(who.instance_id, holding.term, host=who.host, pid=who.pid,
                            acquired_at=holding.acquired_at, lease_state=state)

    def _event(self, kind: str, holding: _Holding) -> None:
        self.events.append(StoreEvent(self.clock(), kind, holding.identity.instance_id, holding.term))

    def _wake_all(self, but: int | None = None) -> None:
        """Tell the contenders' loops; not the one that made the change (it knows), unless others
        share its backend: which of them made it is not known here."""
        if self.notify:
            for backend, wakes in list(self._wakes.items()):
                if backend != but or len(wakes) > 1:
                    for wake in list(wakes):
                        wake()


class MemoryBackend:
    """One contender's link to a MemoryStore: an ElectionBackend (see the module). Without a
    store, it makes one of its own (with the default lease and clock)."""

    name = "memory"

    def __init__(self, store: MemoryStore | None = None) -> None:
        self.store = store if store is not None else MemoryStore()
        self._faults = _Faults()

    def default_timing(self) -> ElectionTiming:
        """From the store's lease: renew 5 times per lease, look for a free lease 10 times per
        lease, stop acting 30 % of a lease before it can end (0.5 s: 0.1, 0.05, 0.15 s)."""
        lease = self.store.lease_duration
        return ElectionTiming(lease_duration=lease, renew_interval=lease / 5, acquire_interval=lease / 10,
                              safety_margin=lease * 0.3)

    # -- switches for this contender only ----------------------------------------------------

    def outage(self, on: bool = True) -> _Switch:
        """This contender cannot reach the store (a partition): its calls raise StorageUnavailableError."""
        return _switch(self._faults, "outage", on)

    def slow(self, seconds: float) -> _Switch:
        """This contender's calls take ``seconds`` more; 0: no more."""
        return _switch(self._faults, "delay", seconds)

    def pause(self) -> _Switch:
        """This contender's calls hang until ``resume()`` (a frozen process, a stuck socket); as a
        context manager, until the block ends. A call that hung goes on when resumed, late."""
        self._faults.resumed.clear()
        return _Switch(self.resume)

    def resume(self) -> None:
        self._faults.resumed.set()

    # -- ElectionBackend ---------------------------------------------------------------------

    def acquire(self, identity: Identity, now: float) -> Lease | Held:
        self._call("acquire")
        return self.store._acquire((id(self), id(identity)), identity, now)

    def renew(self, lease: Lease, now: float) -> Lease:
        self._call("renew")
        return self.store._renew(lease, now)

    def advance_term(self, lease: Lease, identity: Identity, at_least: int) -> Lease:
        self._call("advance the term")
        return self.store._advance_term(lease, at_least)

    def release(self, lease: Lease) -> None:
        self._call("release")
        self.store._release(lease)

    def read_leader(self) -> LeaderRecord | None:
        self._call("read the leader")
        return self.store.leader()

    def watch(self, wake: Callable[[], None]) -> None:
        self.store._wakes.setdefault(id(self), []).append(wake)

    def close(self) -> None:
        self.store._wakes.pop(id(self), None)

    def _call(self, action: str) -> None:
        """What the switches do to a call, before it reaches the store."""
        running = current_clock()
        if running is not None and running is not self.store.clock:
            raise StorageRejectedError("MemoryStore: the election loop runs on a VirtualClock, the store on another "
                                       "clock: pass the same one (MemoryStore(clock=...))")
        if not self._faults.resumed.is_set():
            self._wait(self._faults.resumed, None)
        delay = self.store._faults.delay + self._faults.delay
        if delay > 0:
            self._wait(threading.Event(), delay)
        if self.store._faults.outage:
            raise StorageUnavailableError(f"cannot {action}: the memory store is down (outage switched on)")
        if self._faults.outage:
            raise StorageUnavailableError(f"cannot {action}: this contender cannot reach the memory store "
                                          "(outage switched on)")

    def _wait(self, event: threading.Event, seconds: float | None) -> None:
        clock = self.store.clock
        if isinstance(clock, WaitingClock):
            clock.wait(event, seconds)
        else:
            event.wait(seconds)


class _Switch:
    """What a switch returns: used as a context manager, it switches back when the block ends."""

    def __init__(self, undo: Callable[[], None]) -> None:
        self._undo = undo

    def __enter__(self) -> _Switch:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._undo()


def _switch(faults: _Faults, name: str, value: object) -> _Switch:
    before = getattr(faults, name)
    setattr(faults, name, value)
    return _Switch(lambda: setattr(faults, name, before))
