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
  minimum election timeout) refuses pre-votes and votes from anyone else, without raising its term.
  A node that just started counts as having heard from a leader at start: it may have acked one
  just before it crashed. The leader itself refuses all votes while it leads, and for ``lo`` after
  its last heartbeat round once it steps down.
* **The leader lease**: heartbeats echo their send time. Once a majority (the leader counting
  itself) acked the round sent at ``s``, no other node can win a vote before ``s + lo``: every
  majority contains a node that acked ``s`` at some ``r >= s`` and refuses other candidates until
  ``r + lo``. So ``lease_until = s + lo`` on the leader's clock.
* **Check-quorum**: a leader whose lease ran out (no majority heard for ``lo``) steps down.
* **Leadership transfer** (thesis 3.10): ``transfer_leadership`` ends the lease at once and tells
  the most responsive peer to campaign (TimeoutNow); its votes bypass stickiness, which is safe
  because only a leader that gave up its lease sends TimeoutNow, and only for its own term.
* **Re-campaign** (``recampaign``): the leader moves to a higher term; its followers vote for it
  because it is the very leader they stick to, so nobody else can win meanwhile.
* **Terms that cannot be pushed out of reach** (not in the paper: the paper trusts its peers).
  No term goes above ``MAX_TERM``, and a message whose term jumps further ahead of ours than the
  elections its sender could have seen since we last heard from it is dropped (``_plausible``).
  Without authentication a forger can still raise the term, but only by a few per election
  timeout, never to where nobody can campaign again.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

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

# How far one peer may move our term without an election we could have seen (see _plausible).
# TERM_SLACK: at once, after any silence (a leader's recampaign to a fencing store's term, a
# burst of elections between two messages); TERM_RATE: more per ``lo`` of silence from that peer.
TERM_SLACK = 1000
TERM_RATE_PER_PEER = 2
# How far below the newest seq taken from a peer a message never seen is still taken (_fresh):
# a peer sends about n messages a heartbeat, so this is many rounds of reordering.
REPLAY_WINDOW = 1024


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
        # peer -> (epoch, seq) of its newest message taken, when we last took one, and the seqs
        # of that epoch taken within REPLAY_WINDOW of it (see _fresh)
        self._newest: dict[str, tuple[int, int, float, set[int]]] = {}
        self._forget_after = 2 * hi
        self.stale_messages = 0  # dropped by _fresh, for the runtime to report
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
        # Per peer: how many terms it may still move us ahead, as of when (see _plausible).
        self._term_budget: dict[str, tuple[float, float]] = {p: (TERM_SLACK, now) for p in self.others}
        self._term_rate = TERM_RATE_PER_PEER * (len(self.others) + 1)
        self.implausible_terms = 0  # messages dropped by _plausible, for the runtime to report

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
        if (message.dst == self.id and message.src in self.others and self._fresh(message, now)
                and self._plausible(message, now)):
            # Only now: a message dropped for its term must not make the sender's next ones stale.
            self._take(message, now)
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
        if len(self._granted) >= self.majority:
            self._become_leader(now, out)
            return
        out.messages.extend(Vote(self.id, peer, self.term, transfer) for peer in self.others)

    def _become_leader(self, now: float, out: Outputs) -> None:
        self.role = Role.LEADER
        self.leader, self.leader_info = self.id, self.info
        self._acked = {}
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

    def _fresh(self, m: Message, now: float) -> bool:
        """Whether ``m`` is one we never took from its sender: else it is a replay (a captured
        message sent again) and has no effect.

        A sender stamps ``(epoch, seq)`` on all it sends: ``seq`` counts up within one start and
        ``epoch`` rises at every start (storage.py: the wall clock in microseconds), so what one
        peer sends is ordered across its restarts. As IPsec does (RFC 4303, 3.4.3), we keep the
        newest stamp taken from each sender and which of the ``REPLAY_WINDOW`` seqs below it we
        took: a seq taken before, or older than the window, or of an older epoch, is dropped. A
        message overtaken by a newer one but never seen is still taken: Raft is built for
        reordering, and dropping those would cost elections for nothing. Dropping is safe, too:
        Raft is built for lost messages.

        What this protects against without authentication: genuine messages captured and sent
        again unchanged (a dead leader's heartbeats replayed: issue 13), and old messages that
        resurface late. Not against a forger, who writes a fresh stamp itself (authenticated
        peers, TLS, are the answer to that), nor against a replay to a receiver that restarted
        since it last heard the sender (it starts with an empty memory; a lone follower misled
        that way cannot elect anybody). One forged stamp far ahead must not silence the real
        peer for good, though: an *earlier epoch* is taken again once nothing was taken from
        that sender for ``_forget_after`` (two maximum election timeouts). A replay of the same
        epoch never is, however long the silence: that is the dead leader's case."""
        newest = self._newest.get(m.src)
        if newest is None:
            fresh = True
        else:
            epoch, seq, taken_at, taken = newest
            fresh = (m.epoch > epoch
                     or (m.epoch == epoch and (m.seq > seq or (m.seq > seq - REPLAY_WINDOW and m.seq not in taken)))
                     or (m.epoch < epoch and now - taken_at >= self._forget_after))
        if not fresh:
            self.stale_messages += 1
        return fresh

    def _take(self, m: Message, now: float) -> None:
        """Remember ``m``'s stamp as taken (see _fresh)."""
        newest = self._newest.get(m.src)
        if newest is None or m.epoch != newest[0]:
            self._newest[m.src] = (m.epoch, m.seq, now, {m.seq})
            return
        _, seq, _, taken = newest
        taken.add(m.seq)
        if m.seq > seq:
            seq = m.seq
            if len(taken) > 2 * REPLAY_WINDOW:  # now and then, not at every message
                taken.intersection_update(range(seq - REPLAY_WINDOW + 1, seq + 1))
        self._newest[m.src] = (m.epoch, seq, now, taken)

    def _plausible(self, m: Message, now: float) -> bool:
        """Whether ``m``'s term is one an honest peer could have reached since we last heard it.

        With pre-vote, a term only rises in an election a majority agreed to hold, and each node
        starts one at most once per ``lo`` (its election timeout) unless a leader hands over. So in
        ``t`` seconds of silence from a peer the cluster held at most about ``n * t / lo``
        elections; we allow twice that (``TERM_RATE_PER_PEER`` per node: hand-overs, clock rate
        drift) plus ``TERM_SLACK`` at any time. It is a token bucket per peer: a jump spends
        terms, silence earns them back, at most ``TERM_SLACK`` carried over while the peer talks.
        So a forger can move us at most ``TERM_SLACK`` at once and ``rate`` per ``lo`` after that
        per peer id it claims: it would need millions of years to reach ``MAX_TERM``, and a peer
        back from a partition, however long, still catches up with the cluster's term."""
        budget, since = self._term_budget[m.src]
        available = budget + self._term_rate * max(0.0, now - since) / self.lo
        jump = m.term - self.term
        if jump > available:
            self.implausible_terms += 1
            return False
        self._term_budget[m.src] = (min(TERM_SLACK, available - max(jump, 0)), now)
        return True

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
        stamped = []
        for message in out.messages:
            self._seq += 1
            stamped.append(replace(message, epoch=self.epoch, seq=self._seq))
        out.messages = stamped
        return out
