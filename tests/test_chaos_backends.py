"""The chaos rounds on PostgreSQL and Redis (issue 16), the short form: every fault of the
backend once (harness/chaos/backends.py: kill -9, SIGSTOP past the lease, the proxy cut, a slow
server, the leader's connections killed by the server, the server restarted, a clock jump; on Redis
MySQL down as well), on a PostgreSQL cluster and a redis-server of the harness's own. About a
minute per backend. `make chaos CHAOS_ARGS="--backend postgres --rounds 21"` is the long form.

CHAOS_BACKEND_ROUNDS and CHAOS_SEED change the run.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from harness.chaos import ChaosSettings, render, run_chaos
from harness.services import MySQLServer


@pytest.mark.parametrize("backend", ["postgres", "redis"])
def test_chaos_rounds_on_a_database_keep_every_invariant(backend: str, mysql_server: MySQLServer,
                                                          tmp_path: Path) -> None:
    settings = ChaosSettings(backend=backend, rounds=int(os.environ.get("CHAOS_BACKEND_ROUNDS", "0")),
                             seed=int(os.environ.get("CHAOS_SEED", "1")))
    started = time.monotonic()
    report = run_chaos(settings, mysql_server, tmp_path)
    table = render(report)
    print(f"\n{table}\n({time.monotonic() - started:.0f} s)")
    assert report["violations"] == [], table
    assert report["overlaps"] == 0 and report["stale_rows"] == 0 and report["lost_readings"] == 0, table
    per_fault = {row["fault"]: row for row in report["per_fault"]}
    assert set(per_fault) == set(settings.faults), table
    # The evidence was there to judge, and each fault did what it is for.
    assert report["readings_verified"] > 0 and report["rows"] > 0, table
    for fault in ("kill", "freeze", "cut"):
        assert per_fault[fault]["failovers"] >= 1, f"{fault} did not fail over:\n{table}"
    assert per_fault["conn-kill"]["connections_killed"] >= 1, table
    # A clock jump costs no leader its lease (the invariants say so too). A slowed server may: each
    # call of the leader's, and each round trip of its store's writes, arrives late.
    assert per_fault["clock-jump"]["failovers"] == 0, table
