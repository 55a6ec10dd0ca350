"""A Raft peer as a running thing: the pure core driven on time.monotonic().

    listener thread --(messages)--> inbox --> driver thread --> core.step / core.tick
           '--(a message, inline, when nothing waits)--'   |-- persist the hard state (fsync) first
                                                           |-- then write the messages to the peer links
                                                           '-- publish a NodeStatus snapshot

The core is only ever touched under ``_core_lock``: by the driver thread (its timers, the calls
submitted to it, the messages queued for it) and by the listener thread, which handles a message
itself when the inbox is empty and the lock is free at once (the common case: one thread wakes per
message instead of two; a busy or stalled driver still gets every message through the inbox, in
order, held to the listener's quotas). Everyone else reads the latest snapshot (an immutable object,
swapped in whole) or makes a call (``call_soon``): in the caller's thread when the inbox is empty,
the lock free and no save pending, else through the inbox to the driver. A call's answer is handed
back only once the snapshot shows what the call did, and a call its caller gave up on (``call``
timed out) is never run: a late re-campaign would act behind the caller's back.
"""

from __future__ import annotations

import concurrent.futures
import logging
import math
import queue
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from DistributedMutex.backends.raft.core import HardState, Outputs, RaftCore, Role, default_heartbeat_interval
from DistributedMutex.backends.raft.inbox import _NUDGE, _STOP, _Call, _Delivery, _Item, run_call
from DistributedMutex.backends.raft.limits import ListenerLimits, LogLimiter
from DistributedMutex.backends.raft.listener import Listener
from DistributedMutex.backends.raft.messages import Heartbeat, HeartbeatReply, LeaderInfo, Message, Vote, encode
from DistributedMutex.backends.raft.status import NodeStatus, log_change
from DistributedMutex.backends.raft.storage import StateFile, StateLock
from DistributedMutex.backends.raft.tls import TlsConfig
from DistributedMutex.backends.raft.transport import PeerLink

log = logging.getLogger(__name__)
T = TypeVar("T")


class RaftNode:
    def __init__(self, node_id: str, peers: dict[str, tuple[str, int]], data_dir: Path,
                 election_timeout: tuple[float, float], *, info: LeaderInfo,
                 heartbeat_interval: float | None = None, on_change: Callable[[], None] | None = None,
                 listener_limits: ListenerLimits | None = None, tls: TlsConfig | None = None) -> None:
        self.node_id = node_id
        self.address = peers[node_id]
        self._peers = peers
        self._data_dir = data_dir
        self.election_timeout = election_timeout
        self.heartbeat_interval = heartbeat_interval or default_heartbeat_interval(election_timeout)
        self._info = info
        self._on_change = on_change
        self._listener_limits = listener_limits
        self._tls = tls
        self._state = StateFile(data_dir, node_id)
        # SimpleQueue: its get(timeout), the driver's wait between heartbeats, is one C call.
        self._inbox: queue.SimpleQueue[_Item] = queue.SimpleQueue()
        self._changed = threading.Condition()
        self._core: RaftCore | None = None
        self._status: NodeStatus | None = None
        self._published: tuple[object, ...] = ()  # what _status was made of (see _publish)
        self._unsaved: HardState | None = None
        self._links: dict[str, PeerLink] = {}
        self._listener: Listener | None = None
        self._state_lock = StateLock(data_dir, node_id)
        # What the core's guard dropped (guard.py), as of the driver's last step: for the status.
        self._refused = {"implausible_term": 0, "replayed": 0}
        limits = listener_limits or ListenerLimits()
        self._warn = LogLimiter(log, limits.log_interval, limits.log_burst)
        self._driver: threading.Thread | None = None
        self._core_lock = threading.Lock()  # whoever touches the core holds it (see the module's doc)
        self._driver_wakes_at = math.inf  # the core deadline the driver sleeps towards (under _core_lock)
        # Set by stop(): from then on the driver persists and sends nothing, and exits.
        self._stopping = threading.Event()

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> None:
        """Load the state, take this peer's address, start the threads. OSError if the address
        is taken or the data directory cannot be used; ValueError if the state file is corrupt."""
        self._data_dir.mkdir(parents=True, exist_ok=True)
        self._state_lock.take()
        try:
            persisted = self._state.load()
            now = time.monotonic()
            self._core = RaftCore(self.node_id, list(self._peers), election_timeout=self.election_timeout,
                                  heartbeat_interval=self.heartbeat_interval, rng=random.Random(),
                                  persisted=persisted, now=now, info=self._info)
            self._status = self._snapshot()
            self._listener = Listener(self.address, self._delivered, self._status_json, node_id=self.node_id,
                                      peers=list(self._peers), limits=self._listener_limits, tls=self._tls)
        except BaseException:
            self._state_lock.release()
            raise
        low = self.election_timeout[0]
        self._links = {peer: PeerLink(peer, address, connect_timeout=min(1.0, low / 2), retry_interval=low / 10,
                                      tls=self._tls)
                       for peer, address in self._peers.items() if peer != self.node_id}
        self._driver = threading.Thread(target=self._drive, name=f"raft-{self.node_id}", daemon=True)
        self._driver.start()
        log.info("raft: peer %s listening on %s:%d (%s, term %d%s)", self.node_id, *self.address,
                 "mutual TLS" if self._tls else "plain TCP", persisted.term,
                 f", voted for {persisted.voted_for}" if persisted.voted_for else "")

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the driver, let queued messages go out (bounded), close every connection.

        Nothing is saved once this is called. The lock on the peer's state is let go by the driver
        itself as it exits: a driver stuck past ``timeout`` (a hung disk) keeps it, so no other
        process can run this peer until it is really gone, even if the stuck save then completes.
        """
        driver = self._driver
        if driver is None:
            return
        self._stopping.set()
        self._inbox.put(_STOP)  # wakes the driver if it waits for something to do
        driver.join(timeout)
        deadline = time.monotonic() + min(0.5, timeout)
        for link in self._links.values():
            link.flush(max(0.0, deadline - time.monotonic()))
            link.close()
        if self._listener is not None:
            self._listener.close()
        if driver.is_alive():
            log.error("raft: peer %s did not stop within %g s (its driver is stuck, maybe on the disk); "
                      "keeping the lock on its state in %s until it exits", self.node_id, timeout, self._data_dir)
        self._driver = None

    # -- what the backend asks ---------------------------------------------------------------

    @property
    def status(self) -> NodeStatus:
        assert self._status is not None, "the node has not started"
        return self._status

    def transport_counts(self) -> dict[str, int]:
        """What the listener refused or closed, by reason (also in the status reply, "transport")."""
        return {} if self._listener is None else self._listener.counts()

    def refused_counts(self) -> dict[str, int]:
        """What reached the driver but the core's guard dropped, by reason (the status's "refused"):
        ``implausible_term`` (a term jump no election could explain), ``replayed`` (a message
        already taken, or older than the replay window)."""
        return dict(self._refused)

    @property
    def listener(self) -> Listener | None:
        return self._listener

    def _delivered(self, message: Message, taken: Callable[[], None]) -> None:
        """The listener's thread, for each message it read: handle it here and now if nothing
        waits in the inbox (it would be overtaken) and the driver is not busy, else queue it."""
        if self._inbox.empty() and self._core_lock.acquire(blocking=False):
            try:
                taken()
                if not self._stopping.is_set():  # stopping: dropped, as a queued one would be
                    core = self._core
                    assert core is not None
                    self._handle_safely(core, message, time.monotonic())
                    if core.wake_at < self._driver_wakes_at:
                        self._inbox.put(_NUDGE)
            finally:
                self._core_lock.release()
            return
        self._inbox.put(_Delivery(message, taken))

    def submit(self, fn: Callable[[RaftCore, float], T]) -> concurrent.futures.Future[T]:
        """Queue ``fn(core, now)`` for the driver thread (the only one that touches the core).

        The future is resolved after the status snapshot shows what ``fn`` did; cancel it while
        it is still queued and ``fn`` never runs."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        self._inbox.put((fn, future))
        return future

    def call_soon(self, fn: Callable[[RaftCore, float], T]) -> concurrent.futures.Future[T]:
        """``fn(core, now)`` without waiting for the driver: run in this thread if nothing waits in the
        inbox, the core is free and no save is pending (so nothing here writes to the disk), the
        future then done already; else queued for the driver (``submit``); cancelled if stopped."""
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        answer: Callable[[], None] | None = None
        if self._inbox.empty() and self._core_lock.acquire(blocking=False):
            try:
                core, now = self._core, time.monotonic()
                if core is not None and self._unsaved is None and not self._stopping.is_set():
                    answer = run_call(core, now, fn, future)
                    self._publish(now)  # before the answer, as for every call (see _handle)
                    if core.wake_at < self._driver_wakes_at:
                        self._inbox.put(_NUDGE)
            finally:
                self._core_lock.release()
        if answer is not None:
            answer()
        elif self._stopping.is_set() or self._driver is None:
            future.cancel()
        else:
            self._inbox.put((fn, future))
        return future

    def call(self, fn: Callable[[RaftCore, float], T], timeout: float) -> T:
        """Run ``fn(core, now)`` and return its result: in this thread if it can be at once
        (``call_soon``: one thread less to wake on a hand-over's path), else on the driver thread.
        TimeoutError if the driver did not get to it in time; it then never runs, unless it had
        just started."""
        future = self.call_soon(fn)
        try:
            return future.result(timeout)
        except concurrent.futures.CancelledError:
            raise TimeoutError(f"the Raft peer {self.node_id} stopped before it got to it") from None
        except concurrent.futures.TimeoutError:  # not the built-in one before Python 3.11
            if future.cancel():
                raise TimeoutError(f"the Raft peer {self.node_id} did not get to it within {timeout:g} s") from None
        # The driver took it up just as we gave up: its outcome is on its way (or already there).
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError(f"the Raft peer {self.node_id} started it but did not finish within "
                               f"{timeout:g} s; it may yet take effect") from None

    def wait_until(self, predicate: Callable[[NodeStatus], bool], timeout: float) -> NodeStatus:
        """The first published status for which ``predicate`` holds; the latest one on timeout."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not predicate(self.status):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._changed.wait(remaining)
            return self.status

    def transfer_soon(self, term: int) -> concurrent.futures.Future[str | None]:
        """Hand leadership of ``term`` over without waiting (``call_soon``); the future gives the peer
        told to campaign (None: nobody, or not leading that term)."""
        return self.call_soon(self._hand_over(term))

    def _hand_over(self, term: int) -> Callable[[RaftCore, float], str | None]:
        def hand_over(core: RaftCore, now: float) -> str | None:
            if core.role is not Role.LEADER or core.term != term:
                return None
            out = core.transfer_leadership(now)
            self._carry_out(out)
            return out.messages[0].dst if out.messages else None

        return hand_over

    def recampaign(self, term: int, at_least: int, timeout: float) -> bool:
        """Leader of ``term`` only: campaign again for a term >= ``at_least``. False if not leading."""
        def again(core: RaftCore, now: float) -> bool:
            if core.role is not Role.LEADER or core.term != term:
                return False
            self._carry_out(core.recampaign(at_least, now))
            return True

        return self.call(again, timeout)

    # -- the driver thread -------------------------------------------------------------------

    def _drive(self) -> None:
        core = self._core
        assert core is not None
        while True:
            with self._core_lock:
                self._driver_wakes_at = wake_at = core.wake_at
            wait = wake_at - time.monotonic()
            item: _Item | None
            try:
                item = self._inbox.get(timeout=min(max(wait, 0.0), 1.0)) if wait > 0 else self._inbox.get_nowait()
            except queue.Empty:
                item = None
            with self._core_lock:  # an inline message being handled finishes first
                if item is _STOP or self._stopping.is_set():
                    # What is still queued is dropped: a vote handled now would be saved after stop().
                    self._drop_queued_calls()
                    self._state_lock.release()
                    return
                if item is _NUDGE:
                    item = None
                elif isinstance(item, _Delivery):
                    item.taken()
                    item = item.message
                self._handle_safely(core, item, time.monotonic())

    def _handle_safely(self, core: RaftCore, item: Message | _Call | None, now: float) -> None:
        try:
            self._handle(core, item, now)
        except Exception:  # a bug must not silently kill the peer: say it, go on
            log.exception("raft: peer %s failed to handle %r", self.node_id, item)

    def _drop_queued_calls(self) -> None:
        """Stopping: tell the callers still waiting that their calls will not run."""
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                return
            if isinstance(item, tuple):
                item[1].cancel()
            elif isinstance(item, _Delivery):
                item.taken()

    def _handle(self, core: RaftCore, item: Message | _Call | None, now: float) -> None:
        answer: Callable[[], None] | None = None
        try:
            if isinstance(item, tuple):
                answer = run_call(core, now, *item)
            elif item is not None:
                guard = core.guard
                before = (guard.implausible_terms, guard.stale_messages)
                self._carry_out(core.step(item, now))
                if (guard.implausible_terms, guard.stale_messages) != before:
                    self._note_refusal(core, item, before)
            else:
                self._warn.flush()  # an idle moment: say how many warnings were held back
            if now >= core.wake_at:
                self._carry_out(core.tick(now))
            self._publish(now)
        finally:
            # Only now: a caller that reads the status as soon as it has its answer must see what
            # its call did (a released leadership still showing as leading would be taken again).
            if answer is not None:
                answer()

    def _note_refusal(self, core: RaftCore, message: Message, before: tuple[int, int]) -> None:
        """The guard dropped ``message``: count it for the status, and say so (rate-limited)."""
        guard = core.guard
        self._refused = {"implausible_term": guard.implausible_terms, "replayed": guard.stale_messages}
        kind = type(message).__name__
        if guard.implausible_terms != before[0]:
            self._warn.warning("implausible terms", "raft: dropped a %s from %s: its term %d is further ahead of ours "
                               "(%d) than elections since its last message could explain", kind, message.src,
                               message.term, core.term)
        else:
            self._warn.warning("replayed messages", "raft: dropped a %s from %s: a replay (epoch %d, seq %d was "
                               "taken already or is older than the replay window)", kind, message.src, message.epoch,
                               message.seq)

    def _carry_out(self, out: Outputs) -> None:
        """Persist first; send only once the state the messages rest on is on disk.

        One exception: our own campaign's vote requests go out before our vote for ourselves is
        saved, the save running while they travel (on a hand-over's path, a busy disk's fsync
        costs as much as the rest). Nothing is answered on the strength of that vote: the answers
        wait for this call to end (the core's lock is held), so we count our own vote, and can
        win, only once it is on disk. If we crash first, we never won, and may vote again in that
        term after a restart: only one of the two can lead it. If the save fails, we stay silent
        as below and hold no lease (``_snapshot``) until a save works."""
        if self._stopping.is_set():
            return  # stop() was called: whatever it waits for, nothing more may reach the disk
        early = (self._unsaved is None and out.hard_state is not None and out.hard_state.voted_for == self.node_id
                 and bool(out.messages) and all(isinstance(m, Vote) for m in out.messages))
        if early:
            self._send(out.messages)
        if out.hard_state is not None:
            self._unsaved = out.hard_state
        if self._unsaved is not None:
            try:
                self._state.save(self._unsaved)
            except OSError as exc:
                # Nothing may leave before the term and vote are on disk: stay silent (the others
                # see a dead peer) and try again with the next output.
                log.error("raft: cannot save the term and vote to %s: %s; not answering until it works",
                          self._state.path, exc)
                return
            self._unsaved = None
        if not early:
            self._send(out.messages)

    def _send(self, messages: list[Message]) -> None:
        for message in messages:
            self._links[message.dst].send(encode(message), routine=isinstance(message, (Heartbeat, HeartbeatReply)))

    def _publish(self, now: float) -> None:
        core = self._core
        assert core is not None
        # What the snapshot is made of (lease_until follows from the acked round): most calls (a
        # second reply to a round, a heartbeat sent) change none of it, and this costs less than a
        # snapshot to compare.
        key = (core.role, core.term, core.leader, core.leader_info, core.quorum_acked_sent_at, self._unsaved is None)
        if key == self._published:
            return
        self._published = key
        status, previous = self._snapshot(), self._status
        if status == previous:
            return
        with self._changed:
            self._status = status
            self._changed.notify_all()
        if previous is not None and status.changed_from(previous, now):
            log_change(self.node_id, previous, status)
            if self._on_change is not None and status.worth_waking_for(previous, now):
                self._on_change()

    def _snapshot(self) -> NodeStatus:
        core = self._core
        assert core is not None
        if self._unsaved is not None:  # not on disk: a vote we counted for ourselves could be forgotten
            return NodeStatus(self.node_id, core.role, core.term, core.leader, core.leader_info, -math.inf, -math.inf)
        return NodeStatus(self.node_id, core.role, core.term, core.leader, core.leader_info,
                          core.quorum_acked_sent_at, core.lease_until)

    def _status_json(self) -> dict[str, Any]:
        return {**self.status.to_json(time.monotonic()), "refused": self.refused_counts()}
