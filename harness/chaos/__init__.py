"""The chaos harness: real instances of the demo, faults injected in rounds, invariants checked
from evidence the instances cannot fake.

    make chaos                       # 21 rounds, 3 instances, prints the report table
    make chaos CHAOS_ARGS="--rounds 7 --instances 5 --seed 3"
    make chaos CHAOS_ARGS="--backend postgres"   # or redis: backends.py says what differs

Set-up: N instances of ``python src/DistributedMutex/test.py`` share one lease blob on an Azurite
that keeps its data on disk (so it can be restarted), one MySQL database and a local OpenWeatherMap
stand-in. Each instance reaches Azurite through its own TCP proxy (to cut it off or slow it down)
and MySQL through one shared proxy (to take MySQL "down"). Faults, one per round:

    kill             SIGKILL the leader (it is restarted afterwards)
    freeze           SIGSTOP the leader for longer than the lease, then SIGCONT
    cut              blackhole the leader's storage proxy for longer than the lease, then heal
    slow             2.5 s of latency on every request of the leader's storage calls, for 3 renewals
    azurite-restart  stop Azurite and start it again on its data, while a leader holds the lease
    mysql-down       MySQL refuses connections for 30 s while the leader fetches and writes
    clock-jump       every instance's wall clock jumps 10 minutes forward, then back

Evidence, read after every round:
- the leadership journal (LEADERSHIP_JOURNAL): when each instance started and stopped acting, on
  CLOCK_MONOTONIC. It is the instances' claim, so it is checked against the rest:
- the weather server's own log: who fetched what, when (each instance has its own URL prefix);
- the storage proxies' wire log: when each instance's acquire/renew was sent and granted;
- the database: every row, in insertion order, stamped by the server's clock.
Invariants: no two leaders act at overlapping times; every fetch and every row falls inside a
leadership of the instance that made it, and no later than LEASE_DURATION after a granted
acquire/renew; no row of a lower term after one of a higher term; every reading fetched by a leader
that kept its leadership is stored exactly once; after each fault heals a leader acts wit

The package: model.py (settings, what a round records), backends.py (the election's server and the
store per backend, and the PostgreSQL and Redis faults: conn-kill, server-restart), cluster.py (the
instances and the services, the rounds, what is observed), faults.py (the faults), invariants.py (the checks),
report.py (the report, its table, the command line); ``python -m harness.chaos`` runs it.
The partitions on real sockets (harness/partitions/, run by ``make chaos`` after the rounds) judge
their scenarios with the same checks: invariants.py's overlaps, row_violations, leaderless_gaps.
"""

from __future__ import annotations

from harness.chaos.model import FAULTS, ChaosSettings
from harness.chaos.report import main, render, run_chaos

__all__ = ["FAULTS", "ChaosSettings", "main", "render", "run_chaos"]
