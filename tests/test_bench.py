"""The benchmark (bench/, `make bench`) in its smallest configuration: ours only, one crash and one
graceful trial, 3 contenders without kills. Checks the shape of results.json and that the numbers
are physically plausible, not that the targets are met (that is the full run's job)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support.services import MySQLServer

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_tiny_benchmark_writes_plausible_json(tmp_path: Path, mysql_server: MySQLServer) -> None:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(ROOT / p) for p in ("src", "tests", ".")))
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--designs", "ours", "--trials", "1", "--contenders", "3",
         "--contention-trials", "0", "--window", "4", "--design-window", "6", "--settle", "1", "--no-plot", "--out", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "Failover: seconds from the signal" in run.stdout
    assert "Targets (defaults 15/5/2)" in run.stdout

    results = json.loads((tmp_path / "results.json").read_text())
    ours = results["designs"]["ours"]
    assert ours["emulated"] is False and ours["timing"] == "15/5/2"
    crash, graceful = ours["crash"], ours["graceful"]
    assert crash["n"] == graceful["n"] == 1
    # A killed leader's lease runs out 10-15 s after the kill (renewed every 5 s), then a poll (<= 2.2 s).
    assert 9 <= crash["median"] <= 20, crash
    # A released lease is taken at the next poll.
    assert 0 < graceful["median"] <= 5, graceful
    trial = crash["trials"][0]
    assert trial["new_leader"] != trial["victim"] and trial["new_term"] > trial["victim_term"]

    steady = ours["steady_requests"]
    assert steady["window_s"] >= 5 and steady["leader_per_min"] > 0 and steady["worker_per_min"] > 0, steady

    (contention,) = results["contention"]
    assert contention["contenders"] == 3 and contention["crash"]["n"] == 0
    assert 0.3 <= contention["requests_per_s"] <= 5, contention
    assert 0 < contention["call_latency_ms"]["p99"] < 2000
    assert 0 <= contention["idle_worker_cpu_pct"]["mean"] < 20
    assert 20 < contention["rss_mib"]["median"] < 500

    assert {t["verdict"] for t in results["targets"]} <= {"PASS", "MISS", "NOT MEASURED"}
    assert len(results["targets"]) == 4
    assert results["steady_cost"]["leader_per_min"] is not None
    assert results["runtime_s"] > 0
