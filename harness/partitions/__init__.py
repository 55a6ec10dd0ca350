"""Partitions on real sockets: each demo instance (and each ZooKeeper server, and Azurite) in its own
network namespace, joined by veth pairs to one bridge; links cut with nftables rules inside the
namespaces; the chaos harness's history checks on what happened.

    python -m harness.partitions                       # every scenario x backend that applies
    python -m harness.partitions --backend raft --scenario isolation
    make chaos                                         # the chaos rounds, then this

Needs root, `ip` (iproute2) and `nft` (nftables); without them it says why and does nothing.
Scenarios (the leader is the instance acting as leader when the cut is made):

    isolation    the leader cut off from everything (instances, service, weather)
    split        a minority side with the leader, a majority side with the rest
    one-way-out  the leader hears its peers (raft) or its service but is not heard
    one-way-in   the leader is heard but hears nothing back
    flapping     the leader's links cut 2 s / healed 2 s, for 30 s
    storage      the leader cut off from its storage/coordination service only (zookeeper, azure)

raft and zookeeper run every scenario (raft has no service: no storage cut), the blob lease the
storage cut. Each runs on a fresh cluster; the readings go to one SQLite file (the namespaces share
the file system), whose fencing check refuses stale terms; the weather stand-in serves on the
bridge's address. Checks (harness/chaos/invariants.py): no two instances acting as leader at
overlapping times (the leadership journal, CLOCK_MONOTONIC); no row of a stale term accepted, each
written by its instance while it led; no fetch by an instance that was not leading; no stretch
without a leader longer than the backend's bound (backends.py derives it from the backend's timing)
while a majority can talk, i.e. throughout; no traceback, no instance dead.

The package: network.py (namespaces, bridge, veths, addresses, nft cut/heal, leftovers), cluster.py
(a cluster in namespaces and what is observed), backends.py (raft, zookeeper, azure; raft_env;
the bounds), scenarios.py (the cuts, one scenario's run and its checks), report.py (the table and
the command line).
"""

from __future__ import annotations

from harness.partitions.report import main, render, run_all
from harness.partitions.scenarios import APPLIES, SCENARIOS, ScenarioResult, run_scenario

__all__ = ["APPLIES", "SCENARIOS", "ScenarioResult", "main", "render", "run_all", "run_scenario"]
