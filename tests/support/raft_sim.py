"""A deterministic simulation of Raft election peers: the real RaftCore, a simulated clock and network.

One seed decides everything (cluster size, network quality, the faults and their times), so a
failing seed replays exactly:

    PYTHONPATH=src:tests python -m support.raft_sim --seed 1234 --verbose
    PYTHONPATH=src:tests python -m support.raft_sim --runs 2000          # seeds 0..1999, a summary

Each run: every peer starts (staggered), then ``CHAOS`` seconds of faults: message loss,
duplication, delay (hence reordering; now and then a very late message), partitions (symmetric
and one-way), crashes with restarts from the persisted state only, freezes (a paused process:
its messages wait in its socket buffer), leadership transfers and re-campaigns by the leader. Then
a random majority is connected and left alone: it must elect a leader with a valid lease within
``LIVENESS_BOUND`` and still have one ``HOLD`` later.

Checked throughout, the run failing at the first violation:

* at most one leader per term;
* a node's term never goes back (in memory, across restarts, and on disk), and its persisted vote
  never changes within a term;
* every message goes out after the hard state it depends on was persisted (votes, terms);
* what a peer sends is stamped newer than all it sent before, across restarts (else its peers
  would drop it as a replay: guard.SenderGuard.fresh); a duplicated message is dropped by the
  receiver, as a real replay is;
* no vote is granted twice in one term by one node, across restarts;
* the lease rule, on simulated time: when a node's lease starts, no other node still holds a
  valid one. (Becoming leader is not enough to act: a frozen candidate that wakes up to old votes
  may lead a stale term, but it can never get a lease in it: a majority has moved on.) A lease is
  held, as the mutex holds it, from its grant until its end, or until the holder crashes or
  hands leadership over (the mutex has stopped acting before it releases); a frozen holder
  keeps it until it runs out, and a re-campaigning leader keeps its old one.

Times are seconds with RAFT_ELECTION_TIMEOUT=1000-2000; each peer's clock has its own offset
(only differences on one clock may matter).
"""

from __future__ import annotations

import argparse
import heapq
import logging
import math
import random
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import replace

from DistributedMutex.backends.raft.core import HardState, Outputs, RaftCore, Role
from DistributedMutex.backends.raft.messages import Message, Vote, VoteReply
from support.raft_scenario import (
    CHAOS,
    FAULTS,
    HEARTBEAT,
    HI,
    HOLD,
    LIVENESS_BOUND,
    LO,
    STABLE_MAX_DELAY,
    Peer,
    Scenario,
    Stats,
)

log = logging.getLogger("raft_sim")

REPLAY = "PYTHONPATH=src:tests python -m support.raft_sim --seed {seed} --verbose"

# Event kinds (small ints: the heap compares them only on equal times and sequence numbers).
DELIVER, TICK, FAULT, RESTART, RESUME, STABILISE, LIVENESS, END = range(8)


class SimulationError(AssertionError):
    pass


class Simulation:
    def __init__(self, seed: int, verbose: bool = False, core_class: type[RaftCore] = RaftCore) -> None:
        self.scenario = Scenario.from_seed(seed)
        self._core_class = core_class  # a broken subclass shows that the checks catch it
        self.seed = seed
        self.verbose = verbose
        self.rng = random.Random(f"run-{seed}")
        self.now = 0.0
        self.stats = Stats(seed, len(self.scenario.nodes))
        self._queue: list[tuple[float, int, int, object]] = []
        self._seq = 0
        self.peers = {name: Peer(name, offset=self.rng.uniform(-1e5, 1e5)) for name in self.scenario.nodes}
        self._blocked: set[tuple[str, str]] = set()
        self._leaders: dict[int, str] = {}
        self._votes: dict[tuple[str, int], str] = {}
        self._majority: list[str] = []
        self._stable_at = math.inf
        self._long_delay, self._max_delay = self.scenario.long_delay, self.scenario.max_delay
        # What an attacker on the network saw: recent deliveries, with the receiver's incarnation.
        self._delivered: deque[tuple[Message, int]] = deque(maxlen=500)
        self._loss: dict[tuple[str, str], float] = {}
        self._new_weather()

    # -- running -----------------------------------------------------------------------------

    def run(self) -> Stats:
        for peer in self.peers.values():
            self._push(self.rng.uniform(0, LO), RESTART, (peer.name, 0))
        self._push(self.rng.expovariate(1 / self.scenario.fault_every), FAULT, None)
        self._push(CHAOS, STABILISE, None)
        handlers: dict[int, Callable[[object], None]] = {
            DELIVER: self._deliver, TICK: self._tick, FAULT: self._fault, RESTART: self._restart,  # type: ignore[dict-item]
            RESUME: self._resume, STABILISE: self._stabilise, LIVENESS: self._check_liveness,  # type: ignore[dict-item]
        }
        queue = self._queue
        while queue:
            self.now, _, kind, payload = heapq.heappop(queue)
            if kind == END:
                self._check_end()
                break
            self.stats.events += 1
            handlers[kind](payload)
        return self.stats

    def fail(self, what: str) -> None:
        raise SimulationError(f"raft simulation seed {self.seed}: {what} at t={self.now:.4f}\n"
                              f"  replay: {REPLAY.format(seed=self.seed)}")

    def _push(self, at: float, kind: int, payload: object) -> None:
        self._seq += 1
        heapq.heappush(self._queue, (at, self._seq, kind, payload))

    def _say(self, text: str, *args: object) -> None:
        if self.verbose:
            log.info("%9.4f " + text, self.now, *args)

    # -- a peer's runtime: what node.py does, on simulated time ------------------------------

    def _apply(self, peer: Peer, out: Outputs, cause: str) -> None:
        """Persist first, then send; then check every invariant that this call could break."""
        core = peer.core
        assert core is not None
        if out.hard_state is not None:
            self._persist(peer, out.hard_state)
        for message in out.messages:
            self._check_sent(peer, message)
            self._send(message)
        if core.term < peer.term_seen:
            self.fail(f"{peer.name}'s term went back from {peer.term_seen} to {core.term}")
        peer.term_seen = core.term
        self._check_roles(peer, cause)
        wake = core.wake_at - peer.offset
        if wake < peer.next_tick:
            peer.next_tick = wake
            self._push(max(wake, self.now), TICK, (peer.name, peer.incarnation))
        if self.now >= self._stable_at:
            self._watch_for_lease()

    def _persist(self, peer: Peer, state: HardState) -> None:
        old = peer.disk
        if state.term < old.term:
            self.fail(f"{peer.name} persisted term {state.term} after {old.term}")
        if state.term == old.term and old.voted_for is not None and state.voted_for != old.voted_for:
            self.fail(f"{peer.name} changed its persisted vote in term {old.term}: {old.voted_for} -> {state.voted_for}")
        peer.disk = state

    def _check_sent(self, peer: Peer, message: Message) -> None:
        stamp = (message.epoch, message.seq)
        if stamp <= peer.last_stamp:
            self.fail(f"{peer.name} sent {message} stamped {stamp}, not after its previous {peer.last_stamp}: "
                      "its peers would drop it as a replay")
        peer.last_stamp = stamp
        if message.term > peer.disk.term and not isinstance(message, _PROPOSALS):
            self.fail(f"{peer.name} sent {message} before persisting its term (disk has {peer.disk})")
        if isinstance(message, VoteReply) and message.granted:
            if peer.disk != HardState(message.term, message.dst):
                self.fail(f"{peer.name} granted a vote before persisting it: {message}, disk {peer.disk}")
            earlier = self._votes.setdefault((peer.name, message.term), message.dst)
            if earlier != message.dst:
                self.fail(f"{peer.name} voted twice in term {message.term}: {earlier}, then {message.dst}")

    def _check_roles(self, peer: Peer, cause: str) -> None:
        core = peer.core
        assert core is not None
        if core.role is Role.LEADER:
            leader = self._leaders.setdefault(core.term, peer.name)
            if leader != peer.name:
                self.fail(f"two leaders in term {core.term}: {leader} and {peer.name}")
            if peer.led_term != core.term:
                peer.led_term = core.term
                self.stats.elections += 1
                self._say("%s leads term %d (%s)", peer.name, core.term, cause)
        local = self.now + peer.offset
        if core.lease_valid(local):
            until = core.lease_until - peer.offset
            if until > peer.claim:
                if peer.claim <= self.now:
                    self._say("%s holds a lease (term %d) until %.4f", peer.name, core.term, until)
                    self._no_other_claim(peer, "started a lease")
                peer.claim = until

    def _no_other_claim(self, peer: Peer, what: str) -> None:
        for other in self.peers.values():
            if other is not peer and other.claim > self.now:
                self.fail(f"{peer.name} {what} (term {peer.core.term if peer.core else '?'}) while "
                          f"{other.name}'s lease is valid until {other.claim:.4f}")

    def _send(self, message: Message) -> None:
        self.stats.messages += 1
        if (message.src, message.dst) in self._blocked:
            return
        rng = self.rng
        if rng.random() < self._loss[message.src, message.dst]:
            return
        copies = 2 if rng.random() < self.scenario.duplicate else 1
        for _ in range(copies):
            delay = rng.uniform(0, 3.0) if rng.random() < self._long_delay else rng.uniform(0.0005, self._max_delay)
            self._push(self.now + delay, DELIVER, message)

    # -- events ------------------------------------------------------------------------------

    def _deliver(self, message: object) -> None:
        assert isinstance(message, _MESSAGE_TYPES)
        peer = self.peers[message.dst]
        if peer.core is None:
            return
        if peer.paused:
            peer.buffered.append(message)
            return
        if self.verbose:
            self._say("%s <- %s", peer.name, message)
        self._delivered.append((message, peer.incarnation))
        self._apply(peer, peer.core.step(message, self.now + peer.offset), f"on {type(message).__name__}")

    def _tick(self, payload: object) -> None:
        name, incarnation = payload  # type: ignore[misc]
        peer = self.peers[name]
        if peer.core is None or peer.paused or incarnation != peer.incarnation or self.now < peer.next_tick:
            return
        peer.next_tick = math.inf
        local = self.now + peer.offset
        if 0 < peer.core.wake_at - local < 1e-6:
            local = peer.core.wake_at  # it went through the offset and back: rounding left it a hair early
        self._apply(peer, peer.core.tick(local), "on tick")

    def _restart(self, payload: object) -> None:
        name, incarnation = payload  # type: ignore[misc]
        peer = self.peers[name]
        if peer.core is not None or incarnation != peer.incarnation:
            return
        peer.incarnation += 1
        peer.next_tick = math.inf
        # What storage.py does at every start: a higher epoch (the wall clock's).
        peer.disk = replace(peer.disk, epoch=peer.disk.epoch + 1)
        peer.core = self._core_class(name, self.scenario.nodes, election_timeout=(LO, HI), heartbeat_interval=HEARTBEAT,
                             rng=random.Random(f"{self.seed}-{name}-{peer.incarnation}"), persisted=peer.disk,
                             now=self.now + peer.offset)
        self._say("%s starts with %s", name, peer.disk)
        self._apply(peer, Outputs(), "at start")

    def _resume(self, payload: object) -> None:
        name, incarnation = payload  # type: ignore[misc]
        peer = self.peers[name]
        if not peer.paused or incarnation != peer.incarnation:
            return
        peer.paused = False
        self._say("%s resumes with %d messages waiting", name, len(peer.buffered))
        buffered, peer.buffered = peer.buffered, []
        assert peer.core is not None
        for message in buffered:
            self._apply(peer, peer.core.step(message, self.now + peer.offset), "after a pause")
        peer.next_tick = math.inf
        self._apply(peer, peer.core.tick(self.now + peer.offset), "after a pause")

    def _crash(self, peer: Peer, down_for: float | None = None) -> None:
        self._say("%s crashes", peer.name)
        self.stats.crashes += 1
        peer.core, peer.paused, peer.buffered = None, False, []
        peer.claim = -math.inf  # a dead process acts no more
        down_for = self.rng.uniform(0.05, 3.0) if down_for is None else down_for
        self._push(self.now + down_for, RESTART, (peer.name, peer.incarnation))

    # -- faults ------------------------------------------------------------------------------

    def _fault(self, _: object) -> None:
        if self.now >= CHAOS:
            return
        rng = self.rng
        names = self.scenario.nodes
        leader = self._current_leader()
        kind = rng.choices(FAULTS, weights=self.scenario.fault_weights)[0]
        if kind == "partition":
            side = set(rng.sample(names, rng.randint(1, len(names) - 1)))
            self._blocked = {(a, b) for a in names for b in names if (a in side) != (b in side)}
            self._say("partition %s | rest", sorted(side))
        elif kind == "one-way":
            self._blocked = {(a, b) for a in names for b in names if a != b and rng.random() < 0.3}
            self._say("one-way cuts %s", sorted(self._blocked))
        elif kind == "isolate-leader" and leader is not None:
            self._blocked = {(a, b) for a in names for b in names if a != b and leader.name in (a, b)}
            self._say("leader %s isolated", leader.name)
        elif kind == "cut-link" and leader is not None:
            other = rng.choice([name for name in names if name != leader.name])
            self._blocked |= {(leader.name, other), (other, leader.name)}
            self._say("link %s - %s cut", leader.name, other)
        elif kind == "heal":
            self._blocked = set()
            self._new_weather()
            self._say("network healed")
        elif kind == "crash":
            victim = leader if leader is not None and rng.random() < 0.5 else self.peers[rng.choice(names)]
            if victim.core is not None:
                self._crash(victim)
        elif kind == "bounce":
            victim = self.peers[rng.choice([name for name in names if leader is None or name != leader.name])]
            if victim.core is not None:
                self._crash(victim, down_for=rng.uniform(0.01, 0.3))
        elif kind == "pause":
            victim = leader if leader is not None and rng.random() < 0.5 else self.peers[rng.choice(names)]
            if victim.core is not None and not victim.paused:
                victim.paused = True
                self._say("%s frozen", victim.name)
                self._push(self.now + rng.uniform(0.1, 3.0), RESUME, (victim.name, victim.incarnation))
        elif kind == "transfer" and leader is not None:
            self.stats.transfers += 1
            self._say("%s hands leadership over", leader.name)
            leader.claim = -math.inf  # the mutex stops acting before it releases
            assert leader.core is not None
            self._apply(leader, leader.core.transfer_leadership(self.now + leader.offset), "transfer")
        elif kind == "replay":
            self._replay(rng.randint(1, 20))
        elif kind == "recampaign" and leader is not None:
            assert leader.core is not None
            at_least = leader.core.term + rng.randint(1, 3)
            self._say("%s re-campaigns for term >= %d", leader.name, at_least)
            self._apply(leader, leader.core.recampaign(at_least, self.now + leader.offset), "re-campaign")
        self._push(self.now + rng.expovariate(1 / self.scenario.fault_every), FAULT, None)

    def _replay(self, count: int) -> None:
        """An attacker on the network sends messages it saw delivered again, unchanged: none may
        have any effect (guard.SenderGuard.fresh). Only to the receiver's same start (a restarted
        receiver has forgotten what it took: a limit SenderGuard.fresh states) and from the sender's
        latest start (an older start's messages are taken again after a long silence: ditto)."""
        delivered = list(self._delivered)
        for message, incarnation in self.rng.sample(delivered, min(count, len(delivered))):
            peer = self.peers[message.dst]
            if (peer.core is None or peer.paused or incarnation != peer.incarnation
                    or message.epoch != self.peers[message.src].disk.epoch):
                continue
            before = (peer.core.role, peer.core.term, peer.core.voted_for, peer.core.leader)
            out = peer.core.step(message, self.now + peer.offset)
            after = (peer.core.role, peer.core.term, peer.core.voted_for, peer.core.leader)
            if out.messages or out.hard_state is not None or after != before:
                self.fail(f"a replayed {message} had an effect on {peer.name}: {before} -> {after}, "
                          f"sent {out.messages}")
            self.stats.replayed += 1

    def _new_weather(self) -> None:
        """Each link its own loss rate: a follower on a bad link misses heartbeats and campaigns
        while the leader still holds its lease through the others (what stickiness is for)."""
        names = self.scenario.nodes
        self._loss = {(a, b): min(0.7, self.scenario.loss * self.rng.uniform(0, 4)) for a in names for b in names}

    def _current_leader(self) -> Peer | None:
        for peer in self.peers.values():
            if peer.core is not None and not peer.paused and peer.core.role is Role.LEADER:
                return peer
        return None

    def _stabilise(self, _: object) -> None:
        """From now on a random majority is connected, alive and left alone."""
        names = self.scenario.nodes
        self._majority = self.rng.sample(names, len(names) // 2 + 1)
        inside = set(self._majority)
        self._blocked = {(a, b) for a in names for b in names if (a in inside) != (b in inside)}
        # Raft's own assumption for liveness: a message takes far less than an election timeout.
        self._loss = dict.fromkeys(self._loss, 0.0)
        self._long_delay, self._max_delay = 0.0, min(self._max_delay, STABLE_MAX_DELAY)
        self._stable_at = self.now
        self._say("stable: majority %s connected", self._majority)
        for name in self._majority:
            peer = self.peers[name]
            if peer.core is None:
                self._restart((name, peer.incarnation))
            elif peer.paused:
                self._resume((name, peer.incarnation))
        self._push(self.now + LIVENESS_BOUND, LIVENESS, None)
        self._watch_for_lease()

    def _watch_for_lease(self) -> None:
        holder = self._lease_holder()
        if holder is not None and math.isnan(self.stats.first_lease):
            self.stats.first_lease = self.now - self._stable_at
            self._say("liveness: %s holds a lease %.3f s after stabilising", holder, self.stats.first_lease)
            self._push(self.now + HOLD, END, None)

    def _lease_holder(self) -> str | None:
        for name in self._majority:
            core = self.peers[name].core
            if core is not None and core.lease_valid(self.now + self.peers[name].offset):
                return name
        return None

    def _check_liveness(self, _: object) -> None:
        if math.isnan(self.stats.first_lease):
            self.fail(f"no leader with a valid lease among the connected majority {self._majority} within"
                      f" {LIVENESS_BOUND:g} s of stabilising ({self._describe()})")

    def _check_end(self) -> None:
        if self._lease_holder() is None:
            self.fail(f"the connected majority {self._majority} lost its leader again ({self._describe()})")

    def _describe(self) -> str:
        return "; ".join(f"{p.name}: {p.core.role.value} term {p.core.term}" if p.core else f"{p.name}: down"
                         for p in self.peers.values())


_MESSAGE_TYPES = Message.__args__  # type: ignore[attr-defined]
# Sent with a term above the sender's own, by design: they propose a term, they do not take it.
_PROPOSALS: tuple[type, ...] = tuple(t for t in _MESSAGE_TYPES if t.__name__ in ("PreVote", "PreVoteReply"))
assert Vote in _MESSAGE_TYPES


def run_seed(seed: int, verbose: bool = False, core_class: type[RaftCore] = RaftCore) -> Stats:
    return Simulation(seed, verbose, core_class).run()


def run_many(seeds: range, core_class: type[RaftCore] = RaftCore) -> list[Stats]:
    """Run every seed; the first failure raises SimulationError (with its replay command)."""
    return [run_seed(seed, core_class=core_class) for seed in seeds]


def summary(results: list[Stats], seconds: float) -> str:
    leases = sorted(r.first_lease for r in results)
    return (f"{len(results)} runs in {seconds:.1f} s ({len(results) / seconds:.0f} runs/s, "
            f"{sum(r.events for r in results) / seconds:.0f} events/s); "
            f"{sum(r.elections for r in results)} elections, {sum(r.transfers for r in results)} transfers, "
            f"{sum(r.crashes for r in results)} crashes, {sum(r.replayed for r in results)} replays without effect; first lease after stabilising: median "
            f"{leases[len(leases) // 2]:.2f} s, p99 {leases[int(len(leases) * 0.99)]:.2f} s, "
            f"max {leases[-1]:.2f} s (bound {LIVENESS_BOUND:g} s)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m support.raft_sim", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, help="run this one seed")
    parser.add_argument("--runs", type=int, default=1000, help="run seeds start..start+runs-1 (default 1000)")
    parser.add_argument("--start", type=int, default=0)
    parser.add_argument("--verbose", action="store_true", help="log every event of the run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    seeds = range(args.seed, args.seed + 1) if args.seed is not None else range(args.start, args.start + args.runs)
    started = time.perf_counter()
    results: list[Stats] = []
    try:
        for seed in seeds:
            results.append(run_seed(seed, args.verbose))
    except SimulationError as failure:
        log.error("%s", failure)
        return 1
    log.info("%s", summary(results, time.perf_counter() - started))
    return 0


if __name__ == "__main__":
    sys.exit(main())
