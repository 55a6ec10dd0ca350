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

from bench import readme_backends
from bench.readme_table import END, START, _s, render, rewrite

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


# -- the backends' table (bench/readme_backends.py) -----------------------------------------------------------


def column(settings: str, crash: dict[str, Any], graceful: dict[str, Any], rest: dict[str, Any],
           many: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"settings": settings, "crash": crash, "graceful": graceful, "rest": rest,
            "rest_contenders": {"100": many} if many else {}, "source": "groups x-crash, x-graceful"}


BACKEND_RUN: dict[str, Any] = {
    "started": "2026-12-07T06:30:00+00:00",
    "args": {"trials": 3, "designs": [], "backends": ["azure", "zookeeper", "redis"], "contenders": [100],
             "backend_contenders": [100]},
    "backends": {
        "azure": column("lease 15 s", failover(13.81, 13.2, 14.46, 3), failover(1.021, 0.8, 1.94, 3), {"per_s": 1.3}),
        "zookeeper": column("session 5 s", failover(5.668, 4.6, 6.191, 3), failover(0.0249, 0.016, 0.0371, 3),
                            {"per_s": 4.7}),
        "raft": column("election 1000-2000 ms", failover(1.5, 1.2, 1.7, 3), failover(0.015, 0.01, 0.03, 3),
                       {"per_s": 40.0}, {"contenders": 100, "not_applicable": "a 100-member cluster"}),
        "redis": column("lease 5 s", failover(4.523, 4.1, 4.89, 3), failover(0.006, 0.004, 0.014, 3),
                        {"per_s": 11.3, "by_command_per_s": {"evalsha": 3.0, "get": 3.0}},
                        {"per_s": 407.16, "script_calls_per_s": 99.53, "crash": failover(4.7, 4.2, 5.01, 2)}),
    },
    "contention": [{"contenders": 100, "requests_per_s": 49.83, "crash": failover(14.2, 13.9, 14.83, 1)}],
    "backends_load": {"machine_busy_pct": 61.2, "cpus": 2},
}
OLDER_RUN: dict[str, Any] = {
    "started": "2026-12-01T00:00:00+00:00",
    "args": {"trials": 5, "designs": [], "backends": ["postgres", "redis"], "contenders": [], "backend_contenders": []},
    "backends": {
        "postgres": column("lease 5 s", failover(4.186, 4.0, 4.454, 5), failover(0.011, 0.008, 0.023, 5),
                           {"per_s": 4.93}),
        "redis": column("lease 5 s", failover(9.0, 9.0, 9.0, 5), failover(9.0, 9.0, 9.0, 5), {"per_s": 99.0}),
    },
    "load": {"machine_busy_pct": 40.0, "cpus": 2},
}
PROSE = "| strategy | a blob lease | a znode queue | an algorithm | a row lease | a key lease |"


def test_backend_rows_come_from_the_last_run_that_has_each_backend() -> None:
    summary = readme_backends.summarize([OLDER_RUN, BACKEND_RUN])
    previous = ("\n| | Azure blob lease | ZooKeeper | Raft | PostgreSQL | Redis |\n|---|---|---|---|---|---|\n"
                f"{PROSE}\n| crash failover (SIGKILL): median (max) | old | old | old | old | old |\n\nold caption\n")
    block = readme_backends.render(summary, previous)
    lines = block.splitlines()
    # The prose row stays where it was; the measured rows replace theirs or are added after.
    assert lines[2] == PROSE
    assert lines[3:8] == [
        "| crash failover (SIGKILL): median (max) | 13.81 s (14.46) | 5.67 s (6.19) | 1.50 s (1.70) | 4.19 s (4.45) "
        "| 4.52 s (4.89) |",
        "| graceful failover (SIGTERM): median (max) | 1.02 s (1.94) | 25 ms (37) | 15 ms (30) | 11 ms (23) "
        "| 6 ms (14) |",
        "| cost at rest, 3 instances | 1.3 billed storage requests/s, 0.43 per instance | 4.7 packets/s at the server, "
        "1.57 per instance | 40.0 peer messages/s, 13.33 per instance | 4.9 transactions/s (one per call), 1.64 per "
        "instance | 3.0 script calls/s, 1.00 per instance (11.3 commands with those the scripts run) |",
        # Azure's from the contention phase (the many-contender one did not run); Raft's cannot be.
        "| cost at rest, 100 instances | 49.8 billed storage requests/s, 0.50 per instance | - "
        "| n/a: every instance would be a voting member | - "
        "| 99.5 script calls/s, 1.00 per instance (407 commands with those the scripts run) |",
        "| crash failover (SIGKILL), 100 instances: median (max) | 14.20 s (14.83) | - "
        "| n/a: every instance would be a voting member | - | 4.70 s (5.01) |",
    ]
    assert "old" not in block
    caption = lines[-1]
    assert "PostgreSQL: `make bench BENCH_ARGS=\"--designs '' --backends postgres,redis --trials 5" in caption
    assert "of 2026-12-01 (5 crash and graceful trials each; the machine 40.0 % busy on 2 CPUs)" in caption
    assert "Azure blob lease, ZooKeeper, Raft, Redis: " in caption and "of 2026-12-07 (3 crash" in caption
    assert "Not in these runs" not in caption
    # Idempotent: rendering over its own output gives the same block.
    assert readme_backends.render(summary, block) == block


def test_backend_summary_refuses_runs_without_the_backend_phase() -> None:
    with pytest.raises(ValueError, match="--backends"):
        readme_backends.summarize([RESULTS])


def test_the_readme_is_what_the_generator_writes_from_its_summary() -> None:
    """README.md's backends table is exactly what docs/readme-backends.json (written with it) gives."""
    readme = (ROOT / "README.md").read_text()
    summary = json.loads((ROOT / "docs" / "readme-backends.json").read_text())
    block = readme_backends.render(summary, readme_backends.between(readme))
    assert rewrite(readme, block, readme_backends.START, readme_backends.END) == readme


def test_one_command_regenerates_both_tables(tmp_path: Path) -> None:
    for name, results in (("older.json", OLDER_RUN), ("newer.json", dict(BACKEND_RUN, **RESULTS))):
        (tmp_path / name).write_text(json.dumps(results))
    readme = tmp_path / "README.md"
    readme.write_text(f"a\n{START}\nold\n{END}\nb\n{readme_backends.START}\n{PROSE}\n{readme_backends.END}\nc\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(ROOT / p) for p in ("src", ".")))
    run = subprocess.run([sys.executable, "-m", "bench.readme_table", str(tmp_path / "older.json"),
                          str(tmp_path / "newer.json"), "--readme", str(readme), "--summary",
                          str(tmp_path / "summary.json")], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0, run.stderr
    text = readme.read_text()
    assert "| ZooKeeper graceful (SIGTERM): median (min-max) |" in text
    assert "| crash failover (SIGKILL): median (max) | 13.81 s (14.46) |" in text
    assert text.endswith(f"{readme_backends.END}\nc\n") and "old" not in text
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert set(summary["backends"]) == {"azure", "zookeeper", "raft", "postgres", "redis"}
    assert readme_backends.render(summary, readme_backends.between(text)) == readme_backends.between(text).strip("\n")


def test_only_a_raft_cluster_larger_than_a_deployment_is_not_applicable() -> None:
    """bench/many.py: 100 Raft contenders would be 100 voting members; every other backend runs them."""
    from bench.many import RAFT_MAX_MEMBERS, not_applicable

    reason = not_applicable("raft", 100)
    assert reason is not None and "100-member cluster with a majority of 51" in reason and "9900" in reason
    assert not_applicable("raft", RAFT_MAX_MEMBERS) is None
    assert all(not_applicable(b, 100) is None for b in readme_backends.BACKENDS if b != "raft")


def test_a_hand_over_of_a_few_milliseconds_is_shown_to_a_tenth() -> None:
    """Rounded to the millisecond, 2.6 ms against 2.4 ms would read as 3 against 2."""
    assert [_s(v) for v in (0.0026, 0.0024, 0.003, 0.0149, 0.085, 1.234)] == [
        "2.6 ms", "2.4 ms", "3 ms", "15 ms", "85 ms", "1.23 s"]
