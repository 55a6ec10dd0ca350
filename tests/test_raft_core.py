"""The Raft election core, rule by rule: the real state machine fed real messages, times given.

Each test drives RaftCore directly (it has no I/O to fake) or a few of them through ``Wire``, a
synchronous network in this file that delivers everything at once unless a link is cut.
"""

from __future__ import annotations

import random
from collections.abc import Iterable

import pytest

from DistributedMutex.backends.raft.core import HardState, Outputs, RaftCore, Role
from DistributedMutex.backends.raft.messages import (
    Heartbeat,
    HeartbeatReply,
    LeaderInfo,
    Message,
    PreVote,
    PreVoteReply,
    TimeoutNow,
    Vote,
    VoteReply,
    decode,
    encode,
)

LO, HI, BEAT = 1.0, 2.0, 0.1
PEERS = ("a", "b", "c")
LATER = 10.0  # well past any node's start-up stickiness


class Core(RaftCore):
    """The real core, taking also messages a test wrote by hand (unstamped: seq 0) however often
    it sends them; the stamps' own rule is tested in test_raft_attacks_terms.py."""

    def _admits(self, m: Message, now: float) -> bool:
        return self.guard.plausible(m, self.term, now) if m.seq == 0 else super()._admits(m, now)


def core(node: str = "a", peers: Iterable[str] = PEERS, *, now: float = 0.0,
         persisted: HardState | None = None, seed: int = 1) -> RaftCore:
    return Core(node, list(peers), election_timeout=(LO, HI), heartbeat_interval=BEAT,
                    rng=random.Random(seed), persisted=persisted or HardState(), now=now,
                    info=LeaderInfo(f"instance-{node}", "host", 100))


def only(out: Outputs, kind: type) -> Message:
    assert len(out.messages) == 1 and isinstance(out.messages[0], kind), out.messages
    return out.messages[0]


class Wire:
    """Cores wired together: every message is delivered at once, in order, unless its link is cut.
    Everything happens at ``now``, which the test moves."""

    def __init__(self, names: Iterable[str] = PEERS) -> None:
        names = list(names)
        self.now = 0.0
        self.nodes = {name: core(name, names, seed=i) for i, name in enumerate(names)}
        self.cut: set[tuple[str, str]] = set()
        self.persisted: dict[str, HardState] = {name: HardState() for name in names}

    def isolate(self, name: str) -> None:
        self.cut |= {(a, b) for a in self.nodes for b in self.nodes if name in (a, b) and a != b}

    def heal(self) -> None:
        self.cut.clear()

    def run(self, name: str, out: Outputs) -> None:
        pending = [(name, out)]
        while pending:
            sender, out = pending.pop(0)
            if out.hard_state is not None:
                self.persisted[sender] = out.hard_state
            for message in out.messages:
                if (message.src, message.dst) not in self.cut:
                    pending.append((message.dst, self.nodes[message.dst].step(message, self.now)))

    def advance(self, seconds: float, step: float = BEAT / 2) -> None:
        """Let time pass in small steps, ticking every node."""
        end = self.now + seconds
        while self.now < end:
            self.now = min(end, self.now + step)
            for name, node in self.nodes.items():
                self.run(name, node.tick(self.now))

    def leaders(self) -> list[str]:
        return [name for name, node in self.nodes.items() if node.role is Role.LEADER]

    def elect(self, name: str) -> None:
        """Make ``name`` leader the way a timeout would: its election deadline passes first."""
        node = self.nodes[name]
        self.now = max(self.now, node.wake_at)
        self.run(name, node.tick(self.now))
        assert node.role is Role.LEADER, f"{name} is {node.role}"


# -- votes ----------------------------------------------------------------------------------

def test_a_vote_is_granted_at_most_once_per_term() -> None:
    a = core("a")
    assert only(a.step(Vote("b", "a", 1), LATER), VoteReply).granted
    assert not only(a.step(Vote("c", "a", 1), LATER), VoteReply).granted
    assert only(a.step(Vote("b", "a", 1), LATER), VoteReply).granted, "the same candidate again: same answer"
    assert only(a.step(Vote("c", "a", 2), LATER + LO), VoteReply).granted, "a new term: a new vote"


def test_a_vote_granted_sticks_to_its_candidate_for_lo() -> None:
    """The candidate counts the vote as an ack of its request (its lease starts when it wins), so
    the voter refuses anyone else for lo, in any term, as after a heartbeat; a transfer vote
    (the leader handed over, giving its lease up) still goes through."""
    a = core("a")
    assert only(a.step(Vote("b", "a", 1), LATER), VoteReply).granted
    assert not only(a.step(PreVote("c", "a", 2), LATER + LO - 0.01), PreVoteReply).granted
    assert not only(a.step(Vote("c", "a", 2), LATER + LO - 0.01), VoteReply).granted
    assert a.term == 1, "refused without taking the term"
    assert only(a.step(Vote("b", "a", 2), LATER + LO - 0.01), VoteReply).granted, "its candidate again"
    assert only(a.step(Vote("c", "a", 3, transfer=True), LATER + LO - 0.005), VoteReply).granted
    assert only(a.step(PreVote("b", "a", 4), LATER + 2 * LO), PreVoteReply).granted, "lo later: free again"


def test_the_vote_is_in_the_hard_state_to_persist_before_the_reply_is_sent() -> None:
    out = core("a").step(Vote("b", "a", 3), LATER)
    assert out.hard_state == HardState(3, "b")
    assert only(out, VoteReply) == VoteReply("a", "b", 3, True)


def test_a_higher_term_seen_in_a_heartbeat_is_persisted_before_the_ack() -> None:
    out = core("a").step(Heartbeat("b", "a", 4, 1.0), LATER)
    assert out.hard_state == HardState(4, None)
    assert only(out, HeartbeatReply).term == 4


def test_a_restarted_node_keeps_its_term_and_its_vote() -> None:
    a = core("a", persisted=HardState(5, "b"), now=0.0)
    assert (a.term, a.voted_for) == (5, "b")
    assert not only(a.step(Vote("c", "a", 5), LATER), VoteReply).granted


def test_votes_for_an_old_term_are_refused_with_our_term() -> None:
    a = core("a", persisted=HardState(7, None))
    assert only(a.step(Vote("b", "a", 6), LATER), VoteReply) == VoteReply("a", "b", 7, False)


# -- pre-vote -------------------------------------------------------------------------------

def test_a_pre_vote_changes_nothing_on_the_voter() -> None:
    a = core("a", persisted=HardState(2, None))
    out = a.step(PreVote("b", "a", 3), LATER)
    assert only(out, PreVoteReply) == PreVoteReply("a", "b", 3, True)
    assert out.hard_state is None and (a.term, a.voted_for) == (2, None)


def test_a_timed_out_follower_asks_for_pre_votes_before_raising_its_term() -> None:
    a = core("a", persisted=HardState(2, None))
    out = a.tick(a.wake_at)
    assert a.role is Role.PRE_CANDIDATE and a.term == 2 and out.hard_state is None
    assert sorted(out.messages, key=lambda m: m.dst) == [PreVote("a", "b", 3), PreVote("a", "c", 3)]
    out = a.step(PreVoteReply("b", "a", 3, True), a.wake_at - 0.5)
    assert a.role is Role.CANDIDATE and out.hard_state == HardState(3, "a")
    assert {type(m) for m in out.messages} == {Vote}


def test_a_partitioned_peer_that_comes_back_does_not_disturb_the_leader() -> None:
    wire = Wire()
    wire.elect("a")
    leader_term = wire.nodes["a"].term
    wire.isolate("c")
    wire.advance(5 * HI)  # c times out again and again; its pre-votes are lost
    assert wire.nodes["c"].term == leader_term, "pre-votes that fail must not raise the term"
    wire.heal()
    wire.advance(HI)
    assert wire.leaders() == ["a"] and wire.nodes["a"].term == leader_term
    assert wire.nodes["c"].leader == "a"


# -- stickiness: the leader's lease on the followers -----------------------------------------

@pytest.mark.parametrize("request_type", [PreVote, Vote])
def test_a_follower_that_heard_a_leader_within_lo_refuses_others(request_type: type) -> None:
    b = core("b")
    b.step(Heartbeat("a", "b", 1, 0.0), LATER)
    refused = only(b.step(request_type("c", "b", 2), LATER + LO - 0.01), (PreVoteReply, VoteReply))
    assert not refused.granted and b.term == 1, "refused without taking the candidate's term"
    granted = only(b.step(request_type("c", "b", 2), LATER + LO + 0.01), (PreVoteReply, VoteReply))
    assert granted.granted


def test_a_follower_votes_for_the_leader_it_sticks_to() -> None:
    b = core("b")
    b.step(Heartbeat("a", "b", 1, 0.0), LATER)
    assert only(b.step(Vote("a", "b", 4), LATER + 0.1), VoteReply).granted


def test_a_node_that_just_started_refuses_votes_for_lo() -> None:
    """It may have acked a leader just before it crashed: the lease counted on that ack."""
    b = core("b", now=50.0)
    assert not only(b.step(PreVote("c", "b", 1), 50.0 + LO - 0.01), PreVoteReply).granted
    assert not only(b.step(Vote("c", "b", 1), 50.0 + LO - 0.01), VoteReply).granted
    assert only(b.step(Vote("c", "b", 1), 50.0 + LO + 0.01), VoteReply).granted


def test_the_leader_refuses_every_vote_even_a_transfer() -> None:
    wire = Wire()
    wire.elect("a")
    a = wire.nodes["a"]
    for request in (PreVote("c", "a", a.term + 1), Vote("c", "a", a.term + 1), Vote("c", "a", a.term + 1, True)):
        assert not only(a.step(request, wire.now + 0.01), (PreVoteReply, VoteReply)).granted
    assert a.role is Role.LEADER


def test_a_leader_that_steps_down_refuses_others_until_its_last_round_plus_lo() -> None:
    wire = Wire()
    wire.elect("a")
    a = wire.nodes["a"]
    last_round = wire.now
    a.step(HeartbeatReply("b", "a", a.term + 1, last_round, False), wire.now)  # a higher term: step down
    assert a.role is Role.FOLLOWER
    assert not only(a.step(Vote("c", "a", a.term + 1), last_round + LO - 0.01), VoteReply).granted
    assert only(a.step(Vote("c", "a", a.term + 1), last_round + LO + 0.01), VoteReply).granted


# -- the lease and check-quorum -------------------------------------------------------------

def test_the_lease_runs_from_the_newest_round_a_majority_acked() -> None:
    peers = ("a", "b", "c", "d", "e")
    a = core("a", peers)
    start = a.wake_at
    a.tick(start)
    for peer in peers[1:3]:
        a.step(PreVoteReply(peer, "a", 1, True), start + 0.01)  # the vote requests go out at start + 0.01
    for peer in peers[1:3]:
        a.step(VoteReply(peer, "a", 1, True), start + 0.02)
    assert a.role is Role.LEADER and a.quorum_acked_sent_at == start + 0.01, "the votes ack the vote requests"
    first = a.wake_at - BEAT  # the round sent on election
    assert first == start + 0.02
    a.step(HeartbeatReply("b", "a", 1, first, True), first + 0.01)
    assert a.quorum_acked_sent_at == start + 0.01, "with b, only two of five acked the first round"
    second = a.wake_at
    a.tick(second)
    a.step(HeartbeatReply("c", "a", 1, second, True), second + 0.01)
    assert a.quorum_acked_sent_at == first, "the third newest of a (second), c (second), b (first)"
    a.step(HeartbeatReply("b", "a", 1, second, True), second + 0.02)
    assert a.quorum_acked_sent_at == second and a.lease_until == second + LO
    assert a.lease_valid(second + LO - 0.001) and not a.lease_valid(second + LO)


def test_an_acked_send_time_never_goes_beyond_the_newest_round() -> None:
    wire = Wire()
    wire.elect("a")
    a = wire.nodes["a"]
    a.step(HeartbeatReply("b", "a", a.term, wire.now + 100, True), wire.now)
    assert a.lease_until <= wire.now + LO


def test_a_leader_that_hears_no_majority_for_lo_steps_down() -> None:
    wire = Wire()
    wire.elect("a")
    acked = wire.nodes["a"].quorum_acked_sent_at
    wire.isolate("a")
    wire.advance(LO - 0.1)
    assert wire.nodes["a"].role is Role.LEADER
    wire.advance(0.2)
    assert wire.nodes["a"].role is Role.FOLLOWER, "check-quorum"
    assert wire.now >= acked + LO


def test_an_isolated_leader_stops_before_the_others_can_elect() -> None:
    wire = Wire()
    wire.elect("a")
    wire.isolate("a")
    lease_end = wire.nodes["a"].lease_until
    while not [name for name in wire.leaders() if name != "a"]:
        wire.advance(BEAT / 2)
        assert wire.now < 10 * HI, "the majority never elected"
    assert not wire.nodes["a"].lease_valid(wire.now) and wire.now >= lease_end
    new = next(name for name in wire.leaders() if name != "a")
    assert wire.nodes[new].term > wire.nodes["a"].term


def test_a_heartbeat_from_an_old_term_is_answered_with_ours() -> None:
    b = core("b", persisted=HardState(5, None))
    assert only(b.step(Heartbeat("a", "b", 3, 1.0), LATER), HeartbeatReply) == HeartbeatReply("b", "a", 5, 1.0, False)


def test_heartbeats_carry_who_leads() -> None:
    wire = Wire()
    wire.elect("b")
    assert wire.nodes["a"].leader == "b"
    assert wire.nodes["a"].leader_info == LeaderInfo("instance-b", "host", 100)


# -- leadership transfer and re-campaign ----------------------------------------------------

def test_transfer_ends_the_lease_at_once_and_the_target_campaigns_past_stickiness() -> None:
    wire = Wire()
    wire.elect("a")
    wire.advance(BEAT * 3)
    a = wire.nodes["a"]
    term = a.term
    out = a.transfer_leadership(wire.now)
    assert a.role is Role.FOLLOWER and not a.lease_valid(wire.now)
    timeout_now = only(out, TimeoutNow)
    target = wire.nodes[timeout_now.dst]
    votes = target.step(timeout_now, wire.now)
    assert target.role is Role.CANDIDATE and all(isinstance(m, Vote) and m.transfer for m in votes.messages)
    other = next(name for name in PEERS if name not in ("a", timeout_now.dst))
    assert wire.nodes[other]._sticky_against(timeout_now.dst, wire.now), "the other follower still sticks to a"
    wire.run(timeout_now.dst, votes)
    assert wire.leaders() == [timeout_now.dst] and target.term == term + 1


def test_timeout_now_from_an_old_term_is_ignored() -> None:
    b = core("b", persisted=HardState(4, None))
    assert b.step(TimeoutNow("a", "b", 3), LATER).messages == [] and b.role is Role.FOLLOWER


def test_recampaign_moves_the_same_leader_to_a_higher_term() -> None:
    wire = Wire()
    wire.elect("a")
    wire.advance(BEAT * 2)
    wire.run("a", wire.nodes["a"].recampaign(9, wire.now))
    assert wire.leaders() == ["a"] and wire.nodes["a"].term == 9
    assert wire.persisted["a"] == HardState(9, "a")


def test_nobody_else_wins_while_the_leader_recampaigns() -> None:
    wire = Wire()
    wire.elect("a")
    wire.advance(BEAT * 2)
    wire.cut |= {("a", "b"), ("a", "c")}  # its requests are lost: it stays a candidate
    wire.run("a", wire.nodes["a"].recampaign(5, wire.now))
    b = wire.nodes["b"]
    assert not only(b.step(Vote("c", "b", 6), wire.now + 0.1), VoteReply).granted


# -- the wire format ------------------------------------------------------------------------

@pytest.mark.parametrize("message", [
    PreVote("a", "b", 3), PreVoteReply("b", "a", 3, True), Vote("a", "b", 3, True), VoteReply("b", "a", 3, False),
    Heartbeat("a", "b", 3, 12.5, LeaderInfo("web-1", "host", 42)), Heartbeat("a", "b", 3, 12.5),
    HeartbeatReply("b", "a", 3, 12.5, True), TimeoutNow("a", "b", 3),
])
def test_messages_survive_the_wire(message: Message) -> None:
    line = encode(message)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert decode(line) == message


@pytest.mark.parametrize("line", [
    b"[]", b'{"type": "vote"}', b'{"type": "nope", "src": "a"}', b'{"type": []}', b'{"type": {}}',
    b'{"type": "vote", "src": "a", "dst": "b", "term": true}',
    b'{"type": "vote", "src": "a", "dst": "b", "term": -1}',
    b'{"type": "heartbeat", "src": "a", "dst": "b", "term": 1, "sent_at": "soon"}',
    b'{"type": "heartbeat", "src": "a", "dst": "b", "term": 1, "sent_at": 1, "info": {"pid": "x"}}',
    b"not json",
])
def test_malformed_messages_are_refused(line: bytes) -> None:
    with pytest.raises(ValueError):
        decode(line)


def test_infinities_do_not_parse_as_send_times() -> None:
    with pytest.raises(ValueError):
        decode(b'{"type": "heartbeat_reply", "src": "a", "dst": "b", "term": 1, "sent_at": Infinity, "ok": true}')
