"""The chaos suite: at least 20 rounds mixing every fault, ending with no overlap, no stale row,
no lost reading (harness/chaos/ explains the faults and where the evidence comes from). These are
the Azure rounds; test_chaos_backends.py runs the rounds on PostgreSQL and Redis.

CHAOS_ROUNDS and CHAOS_SEED change the run; `make chaos` runs the same harness on its own.
"""

from __future__ import annotations

import os
from pathlib import Path

from harness.chaos import ChaosSettings, render, run_chaos
from harness.services import MySQLServer


def test_chaos_rounds_keep_every_invariant(mysql_server: MySQLServer, tmp_path: Path) -> None:
    settings = ChaosSettings(rounds=int(os.environ.get("CHAOS_ROUNDS", "21")),
                             seed=int(os.environ.get("CHAOS_SEED", "1")))
    report = run_chaos(settings, mysql_server, tmp_path)
    table = render(report)
    print(table)
    assert report["violations"] == [], table
    assert report["overlaps"] == 0 and report["stale_rows"] == 0 and report["lost_readings"] == 0, table
    assert {row["fault"] for row in report["per_fault"]} == set(settings.faults), table
    assert report["rounds"] >= min(20, settings.rounds), table
    # The evidence was there to judge: readings were checked, and kills and freezes did fail over.
    assert report["readings_verified"] > 0, table
    failovers = {row["fault"]: row["failovers"] for row in report["per_fault"]}
    assert failovers["kill"] >= 1 and failovers["freeze"] >= 1 and failovers["cut"] >= 1, table
