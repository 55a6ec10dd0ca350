"""The next in line's standby lease: a graceful handover without a round trip before the first act.

When the leader's znode goes, the contender just above it leads. To act it needs three things:

* to be the lowest: the watch on the leader's znode says it went, and nobody can join below;
* its term, ``base + sequence + 1`` over the current base: the term base is read with a watch, so a
  change to it (a leader's advance_term) is told before the deletion (one connection delivers its
  events in order); only a live contender's transaction can move it, and after the leader's znode
  is gone that is ours alone;
* a lease: a write sent at ``t`` and answered proves the session alive at the server (in an
  ensemble: at its leader, which checks the session before a quorum commits the write) after ``t``,
  so nobody else can lead before ``t`` + the session timeout (backend.py says why).

A follower knows the first two for free. The third would cost the takeover's own write (a round
trip and the server's disk flush) after the deletion, while kazoo's recipe only reads. So the
contender next in line (and only it) keeps one ready: every ``interval`` a transaction that checks
its own znode, the kind a leader renews with, sent from a thread of its own without waking the
election loop. Sent about as often as kazoo pings an idle session, it takes the ping's place (kazoo
pings only after a third of the session without a request): the server sees about as many packets.
When the leader's znode goes, a proof younger than ``fresh()`` (when the watch fires, and again when
the loop's acquire runs) is the lease, from its sending; the takeover's transaction (the leader's
data, the term check) is sent at once and checked by the first renewal, which fails the lease unless
that transaction's answer says it held. Without a fresh proof, when the term base moved, or when the
connection was suspended since, the takeover waits for its transaction, as before.

Both watches' events run on kazoo's watch thread, in the order the server sent them; an answer's
callback (``rawlink``) runs on another thread. So whatever may conclude "the leader's znode went" is
handed to the watch thread, behind a change of the term base told before it (backend._rearmed).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from kazoo.client import KazooClient
from kazoo.exceptions import KazooException, RolledBackError
from kazoo.interfaces import IAsyncResult

from DistributedMutex.backend import Lease
from DistributedMutex.backends.zookeeper.session import ZooKeeperSession
from DistributedMutex.backends.zookeeper.znodes import parse
from DistributedMutex.errors import StorageUnavailableError
from DistributedMutex.timing import ElectionTiming

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NextInLine:
    """While the znode just below ours is the leader's: our znode and its session epoch, the
    predecessor's name, the term base and version read with the line, and how many times the term
    base's watch had fired before that base was read (-1 until it is read with a watch: the
    standby acts only on a base that has not moved since)."""

    epoch: int
    member: str
    below: str
    base: tuple[int, int | None]
    term_events: int = -1


@dataclass(frozen=True)
class Takeover:
    """What the watch's callback knew when the leader's znode below ours went: our znode, its
    session epoch and the connection (the backend counts suspensions and losses), the term base
    and its version (read with a watch while next in line, or with the line), the takeover
    transaction already sent (with the base it writes) and when (time.monotonic), and the standby
    proof's sending if one was fresh and the watched base has not moved (else None).

    Both moments are carried to the loop's clock as ``now`` less the time since on time.monotonic
    (the loop's default clock): never later than the truth on a clock that runs no faster."""

    epoch: int
    connection: int
    member: str
    base: tuple[int, int | None]
    sent: tuple[IAsyncResult, int] | None
    sent_mono: float
    proven_mono: float | None

    def since(self, now: float) -> float:
        """When the takeover's transaction went, on the clock of ``now`` (taken later)."""
        return now - max(0.0, time.monotonic() - self.sent_mono) if self.sent is not None else now

    def acts_on_proof(self, fresh: float) -> bool:
        """Whether the standby proof is still fresh now, as the loop acts: a loop slow to run acquire
        would otherwise take a lease whose acting window has (nearly) passed, and give it back."""
        return self.proven_mono is not None and time.monotonic() - self.proven_mono <= fresh

    def standby_lease(self, now: float, duration: float) -> Lease:
        """The lease of the standby proof, from its sending, on the clock of ``now``."""
        assert self.proven_mono is not None
        log.debug("taking over with %s on the standby lease of a proof sent %.3f s ago", self.member,
                  time.monotonic() - self.proven_mono)
        return Lease(term=self.base[0] + parse(self.member).seq + 1, token=self.member,
                     sent_at=now - max(0.0, time.monotonic() - self.proven_mono), duration=duration)


class Standby:
    """Keeps a proof that our session is alive while we are next in line (``start``/``stop``)."""

    def __init__(self, client: KazooClient, timing: ElectionTiming, granted: Callable[[], float | None]) -> None:
        self._client = client
        self._timing = timing
        self._granted = granted  # the session timeout the server granted (None: not known yet)
        self.interval = timing.renew_interval
        self._lock = threading.Lock()
        self._changed = threading.Event()
        self._target: tuple[int, str] | None = None  # (epoch, our znode's path) while next in line
        self._proof: tuple[tuple[int, str], float] | None = None
        self._thread: threading.Thread | None = None
        self._closed = False

    def start(self, epoch: int, znode: str) -> None:
        """We are next in line with ``znode`` (of session ``epoch``): prove it now and then every
        ``interval``. Never blocks."""
        with self._lock:
            if self._closed or self._target == (epoch, znode):
                return
            self._target = (epoch, znode)
            self._changed.set()
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="zookeeper-standby", daemon=True)
                self._thread.start()

    def follow(self, epoch: int, znode: str | None) -> None:
        """``start`` when next in line with ``znode``, ``stop`` when not (None)."""
        if znode is None:
            self.stop()
        else:
            self.start(epoch, znode)

    def stop(self) -> None:
        """Not next in line any more (from any thread, kazoo's callbacks included: never blocks)."""
        with self._lock:
            self._target = None
            self._proof = None
            self._changed.set()

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.stop()

    def fresh(self) -> float:
        """The oldest proof a takeover acts on: its lease (the granted session timeout, not the one
        asked for) must leave the loop one renewal (Election.renew_every) within its acting window."""
        granted, timing = self._granted(), self._timing
        if granted is None:
            return 0.0
        window = min(granted, timing.lease_duration) - timing.safety_margin
        return window - min(timing.renew_interval, window / 2)

    def proven(self, epoch: int, znode: str) -> float | None:
        """When the latest answered proof for ``znode`` was sent (time.monotonic), if still fresh."""
        proof = self._proof
        if proof is None or proof[0] != (epoch, znode) or time.monotonic() - proof[1] > self.fresh():
            return None
        return proof[1]

    def _run(self) -> None:
        while True:
            with self._lock:
                target = self._target
                if target is None or self._closed:
                    self._thread = None
                    return
                self._changed.clear()
            sent = time.monotonic()
            transaction = self._client.transaction()
            transaction.check(target[1], -1)
            transaction.commit_async().rawlink(lambda result, target=target, sent=sent: self._answered(
                result, target, sent))
            self._changed.wait(self.interval)

    def _answered(self, result: IAsyncResult, target: tuple[int, str], sent: float) -> None:
        """Kazoo's callback: must not block."""
        ok = result.exception is None and result.value == [True]
        with self._lock:
            if ok and self._target == target:
                self._proof = (target, sent)
        if not ok:
            log.debug("standby proof for %s not answered: %r", target[1], result.exception or result.value)


def takeover_failed(session: ZooKeeperSession, sent: tuple[IAsyncResult, int]) -> str | None:
    """Why a takeover transaction acted on before its answer failed (our znode gone, or the term
    base moved after all, or no answer), or None: it held. Its answer is long in by the first renewal.
    No answer within the call timeout, or the connection's end instead of one, leaves its outcome,
    and so our term, unknown: a failure too (the lease acted on is given up, never left unchecked)."""
    try:
        results = session.wait(sent[0], "check our takeover")
    except (KazooException, StorageUnavailableError) as exc:
        return f"no answer ({type(exc).__name__})"
    failures = [r for r in results if isinstance(r, Exception) and not isinstance(r, RolledBackError)]
    return type(failures[0]).__name__ if failures else None
