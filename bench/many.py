"""Many contenders on every election backend (issue 14): ``n`` instances of one backend with its
defaults (``--backend-contenders``, 100 by default), the cost at rest in a quiet window, then a few
crash trials (``--backend-contention-trials``), beside the backends phase's 3-instance groups.

Each backend runs its own group class (bench/backend_groups.py, bench/db_groups.py) with ``n``
slots: azure the demo behind a proxy each, ZooKeeper one standalone server (``maxClientCnxns=0``:
every client comes from 127.0.0.1), PostgreSQL and Redis a server of their own. Raft is different:
every contender is a voting member (RaftBackend has no non-voting members), so ``n`` contenders are
an ``n``-member cluster with a majority of ``n // 2 + 1``, and each of its ``n (n - 1)`` links goes
through a proxy of its own here. Up to RAFT_MAX_MEMBERS that is run as any other group; beyond, the
cell says "n/a" and why, rather than a number for a cluster nobody deploys.
"""

from __future__ import annotations

import random
import time
from typing import TYPE_CHECKING, Any

from bench.backend_groups import GROUPS
from bench.measure import rounded, summary

if TYPE_CHECKING:
    from bench.designs import Design
    from bench.phases import Bench

RAFT_MAX_MEMBERS = 7
RAFT_NOT_APPLICABLE = ("each Raft contender is a voting member (RaftBackend has no non-voting members): {n} contenders "
                       "would be a {n}-member cluster with a majority of {majority}, which is not how Raft is deployed "
                       "(3 or 5 members), and {links} proxied links here; run up to {most} members")


def not_applicable(backend: str, n: int) -> str | None:
    """Why ``n`` contenders mean nothing on ``backend``, or None."""
    if backend == "raft" and n > RAFT_MAX_MEMBERS:
        return RAFT_NOT_APPLICABLE.format(n=n, majority=n // 2 + 1, links=n * (n - 1), most=RAFT_MAX_MEMBERS)
    return None


def many_at(bench: Bench, backend: str, design: Design, n: int, window: float) -> dict[str, Any]:
    """``n`` contenders on ``backend``: started, steady (every one in line), ``--settle`` seconds, a
    quiet window (the backend's traffic in total and per contender, CPU), then crash trials."""
    reason = not_applicable(backend, n)
    if reason is not None:
        bench.say(f"  {backend}, {n} contenders: n/a: {reason}")
        return {"contenders": n, "not_applicable": reason}
    group = GROUPS[backend](bench, f"{backend}-many{n}", design, n)
    bench.groups.append(group)
    started = time.monotonic()
    try:
        group.start_all()
        group.wait_steady(60 + 2 * n)
        steady = time.monotonic()
        time.sleep(bench.args.settle)
        result = group.quiet_window(window)
        result["contenders"] = n
        result["startup_s"] = rounded(steady - started, 1)
        bench.say(f"  {backend}, {n} contenders at rest: {result['per_s']} {result['counted']}/s "
                  f"({result['per_contender_per_s']} per contender); CPU leader {result['leader_cpu_pct']} %, worker "
                  f"{result['worker_cpu_pct']} %" + (f", server {result['server_cpu_pct']} %"
                                                     if result["server_cpu_pct"] is not None else "")
                  + f"; over {result['window_s']} s")
        trials = []
        count = bench.args.backend_contention_trials
        for number in range(1, count + 1):
            # The same kill phases for every backend and count (common random numbers).
            rng = random.Random(f"{bench.args.seed}-many-{number}")
            try:
                trials.append(group.trial("crash", number, rng, restart=number < count))
            except Exception as exc:  # noqa: BLE001 - reported; the cost at rest stands
                result.setdefault("errors", []).append(f"crash trial {number}: {exc}")
                bench.say(f"  {backend}, {n} contenders, crash trial {number} FAILED: {exc}")
                break
        result["crash"] = summary([t["failover_s"] for t in trials])
        result["crash"]["trials"] = trials
    finally:
        group.end = time.monotonic()
        group.stop_all()
        try:
            bench.mysql.drop_database(group.database)
        except Exception:  # noqa: BLE001 - clean-up only (only the azure demo has a database)
            pass
    return result
