"""Raft leader election as a pure state machine: no I/O, no threads, no clock reads.

The caller drives it with ``tick(now)`` and ``step(message, now)`` and carries out what each call
returns (``Outputs``): first persist ``hard_state`` if it is set, then send ``messages``. The real
node (node.py) and the simulation (tests/support/raft_sim.py) drive the same code. Times are
seconds on the caller's monotonic clock; two nodes' clocks are never compared, only their rates
are assumed equal (the safety margin of the lease absorbs drift).

There is no log: this Raft elects a leader and nothing else, so a vote only needs the term.

Roles: follower -> (election timeout) pre-candidate -> (majority of pre-votes) candidate ->
(majority of votes) leader. What this adds to the paper, and why:

* **Pre-vote** (thesis 9.6): a candidate first asks whether it could win, without raising anybody's
  term, so a peer returning from a partition cannot force a healthy leader out.
* **Stickiness** (etcd's CheckQuorum lease): a node that heard from a leader in the last ``lo`` (the
  minimum election timeout), or granted its vote to a candidate in the last ``lo``, refuses
  pre-votes and votes from anyone else, without raising its term.
  A node that just started counts as having heard from a leader at start: it may have acked one
  just before it crashed. The leader itself refuses all votes while it leads, and for ``lo`` after
  its last heartbeat round once it steps down.
* **The leader lease**: heartbeats echo their send time. Once a majority (the leader counting
  itself) acked the round sent at ``s``, no other node can win a vote before ``s + lo``: every
  majority contains a node that acked ``s`` at some ``r >= s`` and refuses other candidates until
  ``r + lo``. So ``lease_until = s + lo`` on the leader's clock. A granted vote counts as an ack of
  the vote request's send time (the voter sticks to the candidate as it would to a heartbeat's
  sender): a new leader holds its lease from the moment it wins, not a heartbeat round trip later,
  which is what a hand-over waits for.
* **Check-quorum**: a leader whose lease ran out (no majority heard for ``lo``) steps down.
* **Leadership transfer** (thesis 3.10): ``transfer_leadership`` ends the lease at once and tells
  the most responsive peer to campaign (TimeoutNow); its votes bypass stickiness, which is safe
  because only a leader that gave up its lease sends TimeoutNow, and only for its own term.
* **Re-campaign** (``recampaign``): the leader moves to a higher term; its followers vote for it
  because it is the very leader they stick to, so nobody else can win meanwhile.
* **Terms that cannot be pushed out of reach** (not in the paper: the paper trusts its peers).
  No term goes above ``MAX_TERM``, and a message whose term jumps further ahead of ours than the
  elections its sender could have seen since we last heard from it is dropped (guard.py).
  Without authentication a forger can still raise the term, but only by a few per election
  timeout, never to where nobody can campaign again.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum

from DistributedMutex.backends.raft.guard import SenderGuard
from DistributedMutex.backends.raft.messages import (
    MAX_TERM,
    Heartbeat,
    HeartbeatReply,
    LeaderInfo,
    Message,
    PreVote,
    PreVoteReply,
    TimeoutNow,
    Vote,
    VoteReply,
)


def default_heartbeat_interval(election_timeout: tuple[float, float]) -> float:
    """Ten rounds per lease: a few lost or late rounds never let a healthy leader's lease lapse."""
    return election_timeout[0] / 10


class Role(str, Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


@dataclass(frozen=True, slots=True)
class HardState:
    """What must survive a crash: written (and fsynced) before any message that depends on it."""

    term: int = 0
    voted_for: str | None = None
    # This start's epoch (storage.py: the wall clock at start), stamped on every message we send.
    # Not saved and not part of what the state *is*: two states with one term and vote are equal.
    epoch: int = field(default=0, compare=False)


@dataclass(slots=True)
class Outputs:
    """What one call asks of the runtime: persist ``hard_state`` (if set), then send ``messages``."""

    messages: list[Message] = field(default_factory=list)
    hard_state: HardState | None = None


class RaftCore:
    def __init__(self, node_id: str, peers: Sequence[str], *, election_timeout: tuple[float, float],
                 heartbeat_interval: float, rng: random.Random, persisted: HardState, now: float,
                 info: LeaderInfo | None = None) -> None:
        lo, hi = election_timeout
        if node_id not in peers:
            raise ValueError(f"{node_id!r} is not one of the peers {list(peers)}")
        if not 0 < lo <= hi:
            raise ValueError(f"election timeout {lo}-{hi}: need 0 < lo <= hi")
        if not 0 < heartbeat_interval < lo:
            raise ValueError(f"heartbeat interval {heartbeat_interval} must be above 0 and below {lo}")
        self.id = node_id
        self.others = [p for p in dict.fromkeys(peers) if p != node_id]  # ordered: runs replay exactly
        self.majority = (len(self.others) + 1) // 2 + 1
        self.lo, self.hi = lo, hi
        self.heartbeat_interval = heartbeat_interval
        self.info = info
        self._rng = rng
        self.term, self.voted_for = persisted.term, persisted.voted_for
        self.epoch = persisted.epoch
        self._seq = 0  # the last seq we stamped on a message
        self.role = Role.FOLLOWER
        self.leader: str | None = None
        self.leader_info: LeaderInfo | None = None
        # Stickiness: refuse (pre-)votes for anyone but ``_sticky_to`` until ``_sticky_until``.
        # Just started: we may have acked a leader right before a crash, so refuse everyone.
        self._sticky_to: str | None = None
        self._sticky_until = now + lo
        self._election_deadline = now + self._random_timeout()
        self._granted: set[str] = set()  # (pre-)votes won so far; only counted, never iterated
        # Leader state.
        self._acked: dict[str, float] = {}  # peer -> newest heartbeat send time it acked
        self._round_sent_at = -math.inf
        self._next_heartbeat_at = math.inf
        self._elected_at = -math.inf
        self._quorum_sent_at = -math.inf
        self._campaign_sent_at = -math.inf  # when our newest vote requests went out
        # Replays and implausible terms are dropped before any handler sees them (guard.py).
        self.guard = SenderGuard(self.others, lo=lo, hi=hi, now=now)

    # -- what the runtime reads --------------------------------------------------------------

    @property
    def hard_state(self) -> HardState:
        return HardState(self.term, self.voted_for, self.epoch)

    @property
    def quorum_acked_sent_at(self) -> float:
        """The send time of the newest heartbeat round a majority acked (leaders; else -inf)."""
        return self._quorum_sent_at if self.role is Role.LEADER else -math.inf

    @property
    def lease_until(self) -> float:
        """Until when no other node can be elected, on our clock (-inf unless leading)."""
        return self.quorum_acked_sent_at + self.lo

    def lease_valid(self, now: float) -> bool:
        return now < self.lease_until

    @property
    def wake_at(self) -> float:
        """The latest moment ``tick`` must be called again (nothing changes by time before it)."""
        if self.role is Role.LEADER:
            return min(self._next_heartbeat_at, self._check_quorum_at())
        return self._election_deadline

    # -- driving it --------------------------------------------------------------------------

    def tick(self, now: float) -> Outputs:
        """Let time pass: heartbeats and check-quorum for a leader, the election timer otherwise."""
        before = (self.term, self.voted_for)
        out = Outputs()
        if self.role is Role.LEADER:
            if now >= self._check_quorum_at():
                self._step_down(now)
            elif now >= self._next_heartbeat_at:
                self._broadcast_heartbeat(now, out)
        elif now >= self._election_deadline:
            self._start_pre_vote(now, out)
        return self._finish(out, before)

    def step(self, message: Message, now: float) -> Outputs:
        """Handle one message from a peer."""
        before = (self.term, self.voted_for)
        out = Outputs()
        if message.dst == self.id and message.src in self.others and self._admits(message, now):
            # A match, not a table of handlers: each case narrows ``message`` to its own type.
            match message:
                case PreVote():
                    self._on_pre_vote(message, now, out)
                case PreVoteReply():
                    self._on_pre_vote_reply(message, now, out)
                case Vote():
                    self._on_vote(message, now, out)
                case VoteReply():
                    self._on_vote_reply(message, now, out)
                case Heartbeat():
                    self._on_heartbeat(message, now, out)
                case HeartbeatReply():
                    self._on_heartbeat_reply(message, now, out)
                case TimeoutNow():
                    self._on_timeout_now(message, now, out)
        return self._finish(out, before)

    def transfer_leadership(self, now: float) -> Outputs:
        """Give leadership up now: the lease ends at once, and the peer that answered last is told
        to campaign without waiting for its election timeout. No-op unless leading."""
        before = (self.term, self.voted_for)
        out = Outputs()
        if self.role is Role.LEADER:
            target = max(self._acked, key=self._acked.__getitem__, default=None)
            self._step_down(now)
            if target is not None:
                out.messages.append(TimeoutNow(self.id, target, self.term))
        return self._finish(out, before)

    def recampaign(self, at_least: int, now: float) -> Outputs:
        """Leader only: campaign again in a term of at least ``at_least`` (above the current one)."""
        before = (self.term, self.voted_for)
        out = Outputs()
        if self.role is Role.LEADER:
            if at_least > MAX_TERM:
                raise ValueError(f"term {at_least} is above the highest term, {MAX_TERM}")
            self._step_down(now)
            self._campaign(now, out, transfer=False, at_least=at_least)
        return self._finish(out, before)

    # -- message handlers --------------------------------------------------------------------

    def _on_pre_vote(self, m: PreVote, now: float, out: Outputs) -> None:
        # A pre-vote changes nothing here, whatever its term: that is its point.
        granted = self.role is not Role.LEADER and not self._sticky_against(m.src, now) and (
            m.term > self.term or (m.term == self.term and self._can_vote_for(m.src)))
        out.messages.append(PreVoteReply(self.id, m.src, m.term if granted else self.term, granted))

    def _on_pre_vote_reply(self, m: PreVoteReply, now: float, out: Outputs) -> None:
        if not m.granted:
            if m.term > self.term:
                self._become_follower(m.term, now)
            return
        if self.role is Role.PRE_CANDIDATE and m.term == self.term + 1:
            self._granted.add(m.src)
            if len(self._granted) >= self.majority:
                self._campaign(now, out, transfer=False)

    def _on_vote(self, m: Vote, now: float, out: Outputs) -> None:
        refused = m.term < self.term or self.role is Role.LEADER or (
            not m.transfer and self._sticky_against(m.src, now))
        if refused:  # without taking its term: a sticky node must not disturb its leader
            out.messages.append(VoteReply(self.id, m.src, self.term, False))
            return
        if m.term > self.term:
            self._become_follower(m.term, now)
        granted = self._can_vote_for(m.src)
        if granted:
            self.voted_for = m.src
            self._election_deadline = now + self._random_timeout()
            # As after a heartbeat: the candidate counts this vote as an ack of its request's send
            # time (its lease starts at its election), so refuse anyone else for lo from now.
            self._sticky_to, self._sticky_until = m.src, max(self._sticky_until, now + self.lo)
        out.messages.append(VoteReply(self.id, m.src, self.term, granted))

    def _on_vote_reply(self, m: VoteReply, now: float, out: Outputs) -> None:
        if m.term > self.term:
            self._become_follower(m.term, now)
        elif self.role is Role.CANDIDATE and m.term == self.term and m.granted:
            self._granted.add(m.src)
            if len(self._granted) >= self.majority:
                self._become_leader(now, out)

    def _on_heartbeat(self, m: Heartbeat, now: float, out: Outputs) -> None:
        if m.term < self.term:
            # A leader of an old term: tell it ours, so it steps down instead of lingering.
            out.messages.append(HeartbeatReply(self.id, m.src, self.term, m.sent_at, False))
            return
        if m.term > self.term:
            self._become_follower(m.term, now)
        if self.role is Role.LEADER:
            return  # another leader in our own term: impossible; never ack it
        self.role = Role.FOLLOWER
        self.leader, self.leader_info = m.src, m.info
        self._sticky_to, self._sticky_until = m.src, now + self.lo
        self._election_deadline = now + self._random_timeout()
        out.messages.append(HeartbeatReply(self.id, m.src, self.term, m.sent_at, True))

    def _on_heartbeat_reply(self, m: HeartbeatReply, now: float, out: Outputs) -> None:
        if m.term > self.term:
            self._become_follower(m.term, now)
        elif self.role is Role.LEADER and m.term == self.term and m.ok:
            # An echo can only be of a round we sent in this term; never trust a later one.
            sent_at = min(m.sent_at, self._round_sent_at)
            if sent_at > self._acked.get(m.src, -math.inf):
                self._acked[m.src] = sent_at
                self._update_lease()

    def _on_timeout_now(self, m: TimeoutNow, now: float, out: Outputs) -> None:
        # Only from the leader of our term (or one we have not heard of yet: we restarted).
        if m.term == self.term and self.role is not Role.LEADER and self.leader in (None, m.src):
            self._campaign(now, out, transfer=True)

    # -- transitions -------------------------------------------------------------------------

    def _start_pre_vote(self, now: float, out: Outputs) -> None:
        if self.term >= MAX_TERM:  # unreachable by elections (see MAX_TERM): only a bad state file
            self._election_deadline = now + self._random_timeout()
            return
        self.role = Role.PRE_CANDIDATE
        self.leader, self.leader_info = None, None
        self._granted = {self.id}
        self._election_deadline = now + self._random_timeout()
        if len(self._granted) >= self.majority:
            self._campaign(now, out, transfer=False)
            return
        out.messages.extend(PreVote(self.id, peer, self.term + 1) for peer in self.others)

    def _campaign(self, now: float, out: Outputs, *, transfer: bool, at_least: int = 0) -> None:
        if max(self.term + 1, at_least) > MAX_TERM:
            self._election_deadline = now + self._random_timeout()
            return
        self.role = Role.CANDIDATE
        self.term = max(self.term + 1, at_least)
        self.voted_for = self.id
        self.leader, self.leader_info = None, None
        self._granted = {self.id}
        self._election_deadline = now + self._random_timeout()
        self._campaign_sent_at = now
        if len(self._granted) >= self.majority:
            self._become_leader(now, out)
            return
        out.messages.extend(Vote(self.id, peer, self.term, transfer) for peer in self.others)

    def _become_leader(self, now: float, out: Outputs) -> None:
        self.role = Role.LEADER
        self.leader, self.leader_info = self.id, self.info
        # Each vote won acks the vote requests' send time (see _on_vote): the lease starts now.
        # In peer order, not the set's: replays must be exact.
        self._acked = {peer: self._campaign_sent_at for peer in self.others if peer in self._granted}
        self._quorum_sent_at = -math.inf
        self._elected_at = now
        self._broadcast_heartbeat(now, out)

    def _become_follower(self, term: int, now: float) -> None:
        """A higher term was seen: follow (nobody yet) in it."""
        if self.role is Role.LEADER:
            self._step_down(now)
        self.role = Role.FOLLOWER
        if term > self.term:
            self.term, self.voted_for = term, None
            self.leader, self.leader_info = None, None

    def _step_down(self, now: float) -> None:
        """Stop leading. We counted ourselves as having acked every round we sent, so refuse
        other candidates until the newest round's send time + lo, as any acking follower would."""
        self.role = Role.FOLLOWER
        self.leader, self.leader_info = None, None
        self._sticky_to = self.id
        self._sticky_until = max(self._sticky_until, self._round_sent_at + self.lo)
        self._quorum_sent_at = -math.inf
        self._next_heartbeat_at = math.inf
        self._election_deadline = now + self._random_timeout()

    def _broadcast_heartbeat(self, now: float, out: Outputs) -> None:
        self._round_sent_at = now
        self._next_heartbeat_at = now + self.heartbeat_interval
        out.messages.extend(Heartbeat(self.id, peer, self.term, now, self.info) for peer in self.others)
        self._update_lease()

    def _update_lease(self) -> None:
        # The majority-th newest acked send time, counting our own newest round as acked by us.
        acked = sorted([self._round_sent_at, *(self._acked.get(p, -math.inf) for p in self.others)], reverse=True)
        self._quorum_sent_at = max(self._quorum_sent_at, acked[self.majority - 1])

    # -- small rules -------------------------------------------------------------------------

    def _admits(self, m: Message, now: float) -> bool:
        """Neither a replay nor a term far beyond what elections could explain (guard.py)."""
        return self.guard.admits(m, self.term, now)


    def _check_quorum_at(self) -> float:
        # A new leader gets one lo from its election to hear from a majority.
        return max(self._quorum_sent_at, self._elected_at) + self.lo

    def _sticky_against(self, candidate: str, now: float) -> bool:
        return now < self._sticky_until and candidate != self._sticky_to

    def _can_vote_for(self, candidate: str) -> bool:
        """Once per term: only the candidate we already voted for, or anyone if we voted for
        nobody and know no leader in this term."""
        return self.voted_for == candidate or (self.voted_for is None and self.leader is None)

    def _random_timeout(self) -> float:
        return self._rng.uniform(self.lo, self.hi)

    def _finish(self, out: Outputs, before: tuple[int, str | None]) -> Outputs:
        if (self.term, self.voted_for) != before:
            out.hard_state = self.hard_state
        # Stamped in place, not copied (dataclasses.replace, at every heartbeat): each message was
        # made in this very call, and nothing else holds it yet.
        for message in out.messages:
            self._seq += 1
            object.__setattr__(message, "epoch", self.epoch)
            object.__setattr__(message, "seq", self._seq)
        return out
