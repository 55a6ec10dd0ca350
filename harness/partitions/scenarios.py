"""The partitions, one per scenario: each takes a running cluster and its leader, cuts links with
nftables (network.py), holds the cut, heals it, and returns (when it began, when it healed). The
run of one scenario on a fresh cluster, and the chaos harness's checks on what happened."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from harness.chaos.invariants import describe_overlap, leaderless_gaps, overlaps, recovery_after, row_violations
from harness.chaos.model import SEND_SLACK, containing, hold_until
from harness.partitions.backends import BACKENDS
from harness.partitions.cluster import START_TIMEOUT, Cluster

HOLD = 2.0  # s: a cut stays this long after the majority's new leader acts and the old one stopped
FLAP_CUT, FLAP_HEAL, FLAP_TOTAL = 2.0, 2.0, 30.0  # s


class NotApplicableError(Exception):
    """The scenario does not exist for this backend (raft has no storage service to cut off)."""


def _cut_and_hold(cluster: Cluster, leader: str, cut: Callable[[], None]) -> tuple[float, float]:
    """Make the cut; once the majority's new leader acts and the old leader has recorded that it
    stopped, hold it HOLD more seconds; heal (also on failure)."""
    at = time.monotonic()
    cut()
    try:
        cluster.wait_for_leader(cluster.takeover_bound + 10, "no new leader while the old one is cut off",
                                not_=leader, after=at)
        cluster.wait_for_stop(leader, cluster.bound + 10)
        hold_until(time.monotonic() + HOLD)
    finally:
        cluster.network.heal()
    return at, time.monotonic()


def isolation(cluster: Cluster, leader: str) -> tuple[float, float]:
    """The leader cut off from everything: the other instances, the service, the weather."""
    return _cut_and_hold(cluster, leader, lambda: cluster.network.cut([leader], cluster.everyone_but([leader])))


def split(cluster: Cluster, leader: str) -> tuple[float, float]:
    """A minority side with the leader (and, by backend, more: see Cluster.minority), a majority
    side with the rest; both still reach the weather."""
    minority = cluster.minority(leader)
    majority = [n for n in cluster.everyone_but(minority) if n in cluster.network.members]
    return _cut_and_hold(cluster, leader, lambda: cluster.network.cut(minority, majority))


def one_way_out(cluster: Cluster, leader: str) -> tuple[float, float]:
    """The leader hears its peers (or service) but is not heard."""
    return _cut_and_hold(cluster, leader, lambda: cluster.network.block([leader], cluster.peers(leader)))


def one_way_in(cluster: Cluster, leader: str) -> tuple[float, float]:
    """The leader is heard but hears nothing back."""
    return _cut_and_hold(cluster, leader, lambda: cluster.network.block(cluster.peers(leader), [leader]))


def flapping(cluster: Cluster, leader: str, total: float = FLAP_TOTAL) -> tuple[float, float]:
    """The leader's links to its peers (or service) cut FLAP_CUT s, healed FLAP_HEAL s, for ``total`` s;
    each cut takes the instance leading at that moment (the last one cut if none leads), so that
    leadership keeps moving while the links flap."""
    at = time.monotonic()
    try:
        while time.monotonic() < at + total:
            cycle = time.monotonic()
            leader = cluster.leader() or leader
            cluster.network.cut([leader], cluster.peers(leader))
            hold_until(cycle + FLAP_CUT)
            cluster.network.heal()
            hold_until(cycle + FLAP_CUT + FLAP_HEAL)
    finally:
        cluster.network.heal()
    return at, time.monotonic()


def storage(cluster: Cluster, leader: str) -> tuple[float, float]:
    """The leader cut off from its storage/coordination service only (both ways)."""
    if not cluster.service_names():
        raise NotApplicableError(f"{cluster.backend} has no storage or coordination service: its instances elect "
                            "among themselves (the isolation and split scenarios cut them)")
    return _cut_and_hold(cluster, leader, lambda: cluster.network.cut([leader], cluster.service_names()))


SCENARIOS: dict[str, Callable[[Cluster, str], tuple[float, float]]] = {
    "isolation": isolation, "split": split, "one-way-out": one_way_out, "one-way-in": one_way_in,
    "flapping": flapping, "storage": storage}
# Instances per scenario where 3 would make it another scenario's twin: a raft split of 3 leaves the
# leader alone, as isolation does; of 5, it keeps one follower on its (minority) side.
INSTANCES = {("split", "raft"): 5}
APPLIES = {"raft": ("isolation", "split", "one-way-out", "one-way-in", "flapping"),
           "zookeeper": tuple(SCENARIOS), "azure": ("storage",)}


@dataclass
class ScenarioResult:
    scenario: str
    backend: str
    victim: str = ""
    fault_at: float = 0.0
    healed_at: float = 0.0
    ended: float = 0.0
    bound: float = 0.0
    failovers: int = 0
    longest_leaderless: float = 0.0  # from the fault to the end
    recovery: float = 0.0  # from the healing to a leader acting
    takeover: float | None = None  # from the fault to another instance acting
    takeover_bound: float = 0.0
    overlaps: int = 0
    stale_rows: int = 0
    stale_refused: int = 0
    rows: int = 0
    violations: list[str] = field(default_factory=list)


def run_scenario(backend: str, scenario: str, workdir: Path, flap_seconds: float = FLAP_TOTAL,
                 **options: object) -> ScenarioResult:
    """A fresh cluster of ``backend`` in namespaces (``options``: its constructor's), the scenario,
    the checks; everything removed afterwards, also on failure."""
    result = ScenarioResult(scenario, backend)
    options.setdefault("instances", INSTANCES.get((scenario, backend), 3))
    action = partial(flapping, total=flap_seconds) if scenario == "flapping" else SCENARIOS[scenario]
    with BACKENDS[backend](workdir, **options) as cluster:  # type: ignore[arg-type]
        result.bound = cluster.bound
        leader = cluster.wait_for_leader(START_TIMEOUT, "no leader after the instances started")
        # Its term is in the store before the cut: a stale write would now be refused.
        cluster.instances[leader].wait_for(r"stored \d+ readings", timeout=START_TIMEOUT)
        refused_before = cluster.stale_refused()
        result.victim = leader
        result.fault_at = time.monotonic()  # the scenario's own times replace these when it returns
        try:
            result.fault_at, result.healed_at = action(cluster, leader)
            now = cluster.wait_for_leader(cluster.bound + 10, "no leader after the partition healed")
            # Settled: the leader acting now has stored readings since the healing.
            cluster.instances[now].wait_for(r"stored \d+ readings", timeout=15, after=result.healed_at)
        except AssertionError as exc:
            result.healed_at = result.healed_at or time.monotonic()
            result.violations.append(f"{exc}\n{cluster.describe()}")
        result.ended = time.monotonic()
        result.stale_refused = cluster.stale_refused() - refused_before
        judge(cluster, result)
    return result


def judge(cluster: Cluster, result: ScenarioResult) -> None:
    """The chaos harness's history checks (harness/chaos/invariants.py) on this cluster's evidence."""
    intervals = cluster.intervals(result.ended)
    found = overlaps(intervals)
    result.overlaps = len(found)
    result.violations += [describe_overlap(*overlap) for overlap in found]
    rows = cluster.rows()
    result.rows = len(rows)
    _, row_problems = row_violations(rows, intervals, 0, cluster.to_mono)
    result.stale_rows = sum(1 for p in row_problems if p.startswith("stale row "))
    result.violations += row_problems
    assert cluster.weather is not None
    for request in cluster.weather.log():
        mine = [i for i in intervals if i.instance == request.client]
        if request.client and containing(mine, request.mono, SEND_SLACK) is None:
            result.violations.append(f"{request.client} fetched {request.city} at {request.mono:.2f} while not leading")
    gaps = leaderless_gaps(intervals, result.fault_at, result.ended)
    result.longest_leaderless = max((end - start for start, end in gaps), default=0.0)
    result.recovery = recovery_after(gaps, result.healed_at)
    # A majority (of the instances and of the service) can talk throughout every scenario: no
    # stretch without a leader may be longer than the backend's bound, during the cut or after.
    if result.longest_leaderless > result.bound:
        result.violations.append(f"no leader for {result.longest_leaderless:.2f} s (bound {result.bound:g} s)")
    window = [i for i in intervals if i.end > result.fault_at]
    result.failovers = sum(1 for i in window if i.start >= result.fault_at)
    successors = [i.start for i in window if i.start >= result.fault_at and i.instance != result.victim]
    result.takeover = min(successors) - result.fault_at if successors else None
    result.takeover_bound = cluster.takeover_bound
    if result.takeover is not None and result.takeover > result.takeover_bound:
        result.violations.append(f"another instance acted only {result.takeover:.2f} s after the cut "
                                 f"(bound {result.takeover_bound:g} s)")
    result.violations += [f"a traceback in {name}'s output:\n{cluster.instances[name].tail(40)}"
                          for name in cluster.tracebacks()]
    result.violations += [f"{name} died:\n{cluster.instances[name].tail()}" for name in cluster.dead()]
