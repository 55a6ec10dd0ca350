"""bench/readme_table.py: the README's comparison with the real peers, generated from a bench
run's results.json (the shape bench/peer_phase.py writes) between two marker comments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.readme_table import END, START, render, rewrite

ROOT = Path(__file__).resolve().parents[1]


def failover(median: float, low: float, high: float, n: int = 10) -> dict[str, Any]:
    return {"n": n, "min": low, "median": median, "p95": high, "max": high, "trials": []}


def rest(leader_cpu: float, follower_cpu: float, leader_rss: float, follower_rss: float) -> dict[str, Any]:
    return {"leader_cpu_pct": leader_cpu, "worker_cpu_pct": follower_cpu, "leader_rss_mib": leader_rss,
            "worker_rss_mib": follower_rss}


RESULTS: dict[str, Any] = {
    "started": "2026-12-07T05:00:00+00:00",
    "peers": {
        "zookeeper": {
            "settings": "session 5 s, server tick 2 s, a server per group",
            "contenders": {
                "ours": {"label": "ours (ZooKeeperBackend)", "crash": failover(4.89, 4.1, 5.9),
                         "graceful": failover(0.014, 0.009, 0.031), "rest": rest(0.13, 0.23, 26.7, 26.5)},
                "kazoo": {"label": "kazoo Election", "crash": failover(4.54, 3.9, 5.4),
                          "graceful": failover(0.007, 0.005, 0.012), "rest": rest(0.03, 0.03, 21.5, 21.6)},
            },
            "ratios": {"kazoo": {"crash_median": 1.08, "graceful_median": 2.0, "leader_cpu": 4.33,
                                 "follower_cpu": 7.67, "leader_rss": 1.24, "follower_rss": 1.23}},
        },
    },
    "peers_problems": [{"group": "peer-zookeeper-crash-kazoo", "contender": "kazoo", "kind": "no takeover",
                        "detail": "no new leader"}],
    "peers_load": {"machine_busy_pct": 61.5, "cpus": 2},
}


def test_render_gives_one_row_per_measure_with_the_ratio() -> None:
    block = render(RESULTS)
    rows = [line for line in block.splitlines() if line.startswith("| ZooKeeper")]
    assert rows == [
        "| ZooKeeper crash (SIGKILL; session 5 s, server tick 2 s, a server per group): median (min-max) "
        "| 4.89 s (4.10-5.90 s) | kazoo Election: 4.54 s (3.90-5.40 s) | 1.08 |",
        "| ZooKeeper graceful (SIGTERM): median (min-max) | 14 ms (9-31 ms) | kazoo Election: 7 ms (5-12 ms) | 2.00 |",
        "| ZooKeeper CPU at rest, % of one core: leader / follower | 0.13 / 0.23 | kazoo Election: 0.03 / 0.03 "
        "| 4.33 / 7.67 |",
        "| ZooKeeper memory (RSS, MiB): leader / follower | 26.7 / 26.5 | kazoo Election: 21.5 / 21.6 | 1.24 / 1.23 |",
    ]
    assert "2026-12-07: 10 trials per contender" in block
    assert "61.5 % busy on 2 CPUs" in block
    assert "kazoo (peer-zookeeper-crash-kazoo): no takeover" in block


def test_rewrite_replaces_only_the_text_between_the_markers() -> None:
    readme = f"# Title\n\nbefore\n\n{START}\nold table\n{END}\n\nafter\n"
    assert rewrite(readme, "NEW") == f"# Title\n\nbefore\n\n{START}\nNEW\n{END}\n\nafter\n"
    with pytest.raises(ValueError, match="bench-table:start"):
        rewrite("# no markers\n", "NEW")
    with pytest.raises(ValueError, match="once each"):
        rewrite(f"{END}\n{START}\n", "NEW")


def test_render_refuses_results_without_the_peer_phase() -> None:
    with pytest.raises(ValueError, match="--peers"):
        render({"designs": {}})


def test_the_command_rewrites_a_readme_from_a_results_json(tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    results.write_text(json.dumps(RESULTS))
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold\n{END}\noutro\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(ROOT / p) for p in ("src", ".")))
    run = subprocess.run([sys.executable, "-m", "bench.readme_table", str(results), "--readme", str(readme)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    text = readme.read_text()
    assert text.startswith(f"intro\n{START}\n| cell | ours | peer | ours/peer |\n") and text.endswith(f"{END}\noutro\n")
    assert "old" not in text
    # The real README holds the markers once each (the generator has a place to write).
    real = (ROOT / "README.md").read_text()
    assert real.count(START) == 1 and real.count(END) == 1

    readme.write_text("no markers\n")
    run = subprocess.run([sys.executable, "-m", "bench.readme_table", str(results), "--readme", str(readme)],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and run.stderr.startswith("readme_table: the README must hold"), run.stderr
    assert "Traceback" not in run.stderr and readme.read_text() == "no markers\n"
