"""What one seed of the Raft simulation (support/raft_sim.py) decides before it runs: the cluster,
the network's quality and the faults it favours; the timing every run shares; a simulated peer;
and the counts a run reports."""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field

from DistributedMutex.backends.raft.core import HardState, RaftCore, default_heartbeat_interval
from DistributedMutex.backends.raft.messages import Message

LO, HI = 1.0, 2.0
HEARTBEAT = default_heartbeat_interval((LO, HI))  # as the real peers
CHAOS = 10.0  # seconds of faults
# Randomised timeouts make liveness probabilistic: each split vote costs another timeout. Seeds
# 0-33999: median 0.63 s, p99 3.2 s, worst 8.3 s (four split votes in a row among three peers).
LIVENESS_BOUND = LO + 6 * HI
HOLD = 2 * HI  # the leadership must last this long after it first appears
STABLE_MAX_DELAY = 0.05  # once stable, a message takes at most this long (Raft's own liveness assumption)

FAULTS = ("partition", "one-way", "isolate-leader", "cut-link", "heal", "crash", "bounce", "pause", "transfer",
          "recampaign", "replay")
FAULT_WEIGHTS = (2, 1, 2, 2, 3, 2, 2, 2, 2, 1, 2)


@dataclass
class Scenario:
    """Everything a seed decides before the run starts."""

    seed: int
    nodes: list[str]
    loss: float
    duplicate: float
    max_delay: float
    long_delay: float  # probability that a message is held up to 3 s
    fault_every: float  # mean seconds between faults
    fault_weights: list[float]  # each seed favours some faults: rare combinations come up more often

    @classmethod
    def from_seed(cls, seed: int) -> Scenario:
        rng = random.Random(f"scenario-{seed}")
        size = rng.choice((3, 3, 4, 5, 5))
        return cls(seed, [f"n{i}" for i in range(1, size + 1)], loss=rng.uniform(0, 0.15),
                   duplicate=rng.uniform(0, 0.05), max_delay=rng.uniform(0.001, 0.3),
                   long_delay=rng.choice((0.0, 0.005, 0.02, 0.08)), fault_every=rng.uniform(0.3, 2.0),
                   fault_weights=[weight * rng.random() ** 2 for weight in FAULT_WEIGHTS])


@dataclass
class Stats:
    seed: int
    nodes: int
    events: int = 0
    messages: int = 0
    elections: int = 0
    transfers: int = 0
    replayed: int = 0  # delivered messages sent again by the "replay" fault (none may have an effect)
    crashes: int = 0
    first_lease: float = math.nan  # seconds from stabilisation to the first valid lease


@dataclass
class Peer:
    """One simulated process: its core (None while crashed), its disk, its clock offset."""

    name: str
    offset: float
    disk: HardState = field(default_factory=HardState)
    last_stamp: tuple[int, int] = (0, 0)  # the (epoch, seq) of the last message it sent
    core: RaftCore | None = None
    paused: bool = False
    buffered: list[Message] = field(default_factory=list)
    next_tick: float = math.inf
    incarnation: int = 0  # restarts so far: stale restart/resume events are told apart by it
    claim: float = -math.inf  # until when (sim time) this peer holds a lease, as its mutex would
    term_seen: int = 0
    led_term: int = -1
