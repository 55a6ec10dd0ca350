"""The benchmark (bench/, `make bench`) in its smallest configuration: the 'ours' design and the five
election backends (azure, zookeeper, raft, postgres, redis), one crash and one graceful trial each, 3
contenders without kills, every backend's cost at rest with 4 contenders (no kills: the full run's
--backend-contention-trials are crash trials as the backends phase's); and the real-peer phase alone
in its short form (2 interleaved trials per contender and signal).
Checks the shape of results.json and of the printed table, and that the numbers are physically
plausible, not that the targets are met (that is the full run's job)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from harness.services import MySQLServer

ROOT = Path(__file__).resolve().parents[1]
BACKENDS = ("azure", "zookeeper", "raft", "postgres", "redis")


def run_bench(args: list[str], out: Path, timeout: float) -> str:
    """``python -m bench ARGS --out OUT``; its stdout. Past ``timeout`` the bench is stopped as Ctrl-C
    stops it (SIGTERM: it stops every instance and server it started), its process group killed if
    that takes more than 30 s (servers it started in sessions of their own may then be left over),
    and the test fails with what the bench had printed (each line stamped with its time: where the
    time went) and the end of each instance's log. Interrupted itself (Ctrl-C, a CI cancel), the
    test stops the bench the same way before it goes."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(str(ROOT / p) for p in ("src", ".")))
    with subprocess.Popen([sys.executable, "-m", "bench", *args, "--no-plot", "--out", str(out)], cwd=ROOT, env=env,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True) as bench:
        try:
            stdout, stderr = bench.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            stdout, stderr = _stop(bench)
        except BaseException:
            _stop(bench)
            raise
    if timed_out:
        tails = [(log.name, log.read_text(errors="replace")[-600:]) for log in sorted((out / "logs").glob("*.log"))]
        logs = "".join(f"\n--- {name}: ...{tail}" for name, tail in tails if tail.strip())
        pytest.fail(f"the bench did not finish within {timeout:g} s; it printed:\n{stdout[-6000:]}{stderr[-2000:]}"
                    f"{logs[-8000:]}", pytrace=False)
    assert bench.returncode == 0, stdout[-4000:] + stderr[-3000:]
    return stdout


def _stop(bench: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM, 30 s to stop what it started, then SIGKILL to its process group; what it printed."""
    with contextlib.suppress(ProcessLookupError):
        bench.send_signal(signal.SIGTERM)
    try:
        return bench.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(bench.pid, signal.SIGKILL)
        try:
            return bench.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            return "", "(the bench's output could not be read after SIGKILL)"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, mysql_server: MySQLServer) -> tuple[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench")
    stdout = run_bench(["--designs", "ours", "--backends", ",".join(BACKENDS), "--trials", "1", "--contenders", "3",
                        "--contention-trials", "0", "--window", "4", "--design-window", "6", "--settle", "1",
                        "--backend-contenders", "4", "--backend-contention-trials", "0", "--peers", ""], out, 300)
    return stdout, json.loads((out / "results.json").read_text())


@pytest.mark.slow
def test_tiny_benchmark_writes_plausible_json(tiny_run: tuple[str, dict[str, Any]]) -> None:
    stdout, results = tiny_run
    assert "Failover: seconds from the signal" in stdout
    assert "Targets (defaults 15/5/2)" in stdout

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


# Plausible failover seconds per backend and signal, with its defaults: (lowest, highest).
PLAUSIBLE = {
    # Lease 15 s renewed every 5 s: it runs out 10-15 s after the kill, then a poll (<= 2.2 s).
    ("azure", "crash"): (9, 20), ("azure", "graceful"): (0, 5),
    # Session 5 s, expired by the server up to a 2 s tick late; renewed (heard from) every second.
    ("zookeeper", "crash"): (2, 12), ("zookeeper", "graceful"): (0, 3),
    # Followers wait an election timeout (1-2 s) from the last heartbeat; a stopping leader hands over.
    ("raft", "crash"): (0.3, 8), ("raft", "graceful"): (0, 3),
    # A 5 s lease by the server's clock, renewed every 1.6 s (PostgreSQL) or 1 s (Redis): it ends
    # 3.4-5 s (4-5 s) after the kill, then a contender's try; a release is NOTIFYed / published.
    ("postgres", "crash"): (2.5, 9), ("postgres", "graceful"): (0, 1.5),
    ("redis", "crash"): (2.5, 9), ("redis", "graceful"): (0, 1.5),
}


@pytest.mark.slow
def test_tiny_benchmark_has_a_column_per_backend(tiny_run: tuple[str, dict[str, Any]]) -> None:
    stdout, results = tiny_run
    assert not results["errors"], results["errors"]
    # The printed table: one column per backend, with the failover and the cost at rest.
    table = stdout[stdout.index("Failover by election backend"):]
    header = table.splitlines()[2].split()
    assert header == list(BACKENDS), table[:500]
    for row in ("SIGKILL median s", "SIGTERM median s", "at rest: per second, all 3", "at rest: leader CPU %"):
        assert row in table, row

    columns = results["backends"]
    assert list(columns) == list(BACKENDS)
    assert "'ours' design" in columns["azure"]["source"]  # the same product and settings: not run twice
    for backend, column in columns.items():
        for mode in ("crash", "graceful"):
            lowest, highest = PLAUSIBLE[backend, mode]
            assert column[mode]["n"] == 1, (backend, mode, column[mode])
            assert lowest < column[mode]["median"] <= highest, (backend, mode, column[mode])
            (trial,) = column[mode]["trials"]
            assert trial["new_leader"] != trial["victim"] and trial["new_term"] > trial["victim_term"], trial
        rest = column["rest"]
        assert rest["window_s"] >= 5 and not rest["leader_changed"], (backend, rest)
        assert 0 <= rest["leader_cpu_pct"] < 50 and 0 <= rest["worker_cpu_pct"] < 50, (backend, rest)

    azure, zookeeper, raft, postgres, redis = (columns[b]["rest"] for b in BACKENDS)
    assert azure["counted"] == "storage requests" and 0.3 <= azure["per_s"] <= 5, azure
    # The server hears every session's pings and the leader's renewals, and answers each.
    assert zookeeper["counted"] == "packets at the server", zookeeper
    assert zookeeper["received_per_s"] > 0 and zookeeper["sent_per_s"] > 0 and zookeeper["per_s"] < 200, zookeeper
    assert zookeeper["alive_connections"] >= 3 and zookeeper["ephemerals"] == 3, zookeeper
    assert zookeeper["server_cpu_pct"] is not None and 0 <= zookeeper["server_cpu_pct"] < 100, zookeeper
    # The leader's heartbeats to both followers, and their replies, crossed the per-link proxies.
    assert raft["counted"] == "peer messages" and 0 < raft["per_s"] < 1000, raft
    assert raft["by_type_per_s"].get("heartbeat", 0) > 0 and raft["by_type_per_s"].get("heartbeat_reply", 0) > 0, raft
    assert "not JSON" not in raft["by_type_per_s"], raft
    assert len(raft["per_link_per_s"]) == 6, raft
    # Two contenders trying every 0.5 s and a leader renewing every 1.6 s: about 5 transactions/s.
    assert postgres["counted"] == "transactions at the server" and 1 < postgres["per_s"] < 50, postgres
    # The leader's renewal script every second, the contenders' look at the key: EVALSHA among them.
    assert redis["counted"] == "commands at the server" and 1 < redis["per_s"] < 100, redis
    assert redis["by_command_per_s"].get("evalsha", 0) > 0 and "info" not in redis["by_command_per_s"], redis
    for row in ("at rest: per second, 4 contenders", "at rest: per second, per contender of 4",
                "4 contenders: SIGKILL median s"):
        assert row in table, row
    for backend in BACKENDS:
        rest, many = columns[backend]["rest"], columns[backend]["rest_contenders"]["4"]
        assert many["contenders"] == 4 and not many["leader_changed"], (backend, many)
        assert many["crash"]["n"] == 0, (backend, many["crash"])
        # In all and per contender: each one polls, or pings (ZooKeeper), or hears heartbeats (Raft).
        # A window of a few seconds counts whole polls, each contender's one off at either end (the
        # blob lease's contenders poll every 2 s, its leader renews every 5 s: 14 requests in one
        # 6 s window, 11 in another, once): more in all, give or take one per contender.
        assert many["per_s"] + 4 / many["window_s"] > rest["per_s"], (backend, many, rest)
        assert many["per_contender_per_s"] == round(many["per_s"] / 4, 3), (backend, many)
        assert rest["per_contender_per_s"] == round(rest["per_s"] / 3, 3), (backend, rest)

    targets = results["backend_targets"]
    assert [t["backend"] for t in targets] == [b for b in BACKENDS for _ in range(2)]
    assert {t["verdict"] for t in targets} <= {"PASS", "MISS"}


@pytest.fixture(scope="module")
def peers_run(tmp_path_factory: pytest.TempPathFactory, mysql_server: MySQLServer) -> tuple[str, dict[str, Any]]:
    out = tmp_path_factory.mktemp("bench-peers")
    # About 50 s alone, even with every core busy; the bound leaves room for a machine busier still.
    stdout = run_bench(["--designs", "", "--backends", "", "--contenders", "", "--peers", "zookeeper,raft",
                        "--peer-trials", "2", "--design-window", "6"], out, 300)
    return stdout, json.loads((out / "results.json").read_text())


PEER_KEYS = {"zookeeper": ["ours", "kazoo"], "raft": ["ours", "pysyncobj", "pysyncobj-ct"]}


@pytest.mark.slow
def test_real_peers_short_form(peers_run: tuple[str, dict[str, Any]]) -> None:
    stdout, results = peers_run
    assert not results["errors"], results["errors"]
    for backend, title in (("zookeeper", "Real peers on ZooKeeper"), ("raft", "Real peers on Raft")):
        table = stdout[stdout.index(title):]
        header = table.splitlines()[2]
        assert all(f"ours/{key}" in header for key in PEER_KEYS[backend][1:]), header
        assert "at rest: leader wake-ups/s" in table and "at rest: leader threads" in table, table
    column_of = results["peers"]
    assert list(column_of) == ["zookeeper", "raft"]
    for backend, column in column_of.items():
        assert list(column["contenders"]) == PEER_KEYS[backend]
        for key, contender in column["contenders"].items():
            for mode in ("crash", "graceful"):
                lowest, highest = PLAUSIBLE[backend, mode]
                summary = contender[mode]
                assert summary["n"] == 2, (backend, key, mode, summary)
                assert lowest < summary["min"] <= summary["median"] <= summary["max"] <= highest, (backend, key, mode)
                for trial in summary["trials"]:
                    assert trial["new_leader"] != trial["victim"], trial
                    assert trial["signal_mono"] < trial["new_start_mono"], trial
            rest = contender["rest"]
            assert rest["window_s"] >= 5 and not rest["leader_changed"], (backend, key, rest)
            assert 0 <= rest["leader_cpu_pct"] < 50 and 0 <= rest["worker_cpu_pct"] < 50, (backend, key, rest)
            # Every contender's process waits on timers and sockets at rest: its threads wake, but not
            # thousands of times a second (a busy loop), and the leader has a thread or more.
            assert 0 < rest["leader_wakes_per_s"] < 1000 and 0 < rest["worker_wakes_per_s"] < 1000, (backend, key, rest)
            assert rest["threads"][rest["leader"]] >= 1, (backend, key, rest)
            # A Python process with its election library: more than an interpreter, far less than a JVM.
            assert 8 < rest["leader_rss_mib"] < 300 and 8 < rest["worker_rss_mib"] < 300, (backend, key, rest)
        for peer in PEER_KEYS[backend][1:]:
            ratio = column["ratios"][peer]
            assert ratio["crash_median"] > 0 and ratio["graceful_median"] > 0, (backend, peer, ratio)
            assert ratio["leader_rss"] > 0 and ratio["leader_wakes"] > 0, (backend, peer, ratio)
    # The same kill phase for every contender of a cell, trial by trial (common random numbers).
    for backend, column in column_of.items():
        phases = {tuple(t["phase_s"] for t in c["crash"]["trials"]) for c in column["contenders"].values()}
        assert len(phases) == 1, (backend, phases)
    assert {p["kind"] for p in results["peers_problems"]} <= {"two leaders", "no takeover", "error"}
    assert not [p for p in results["peers_problems"] if p["contender"] == "ours"], results["peers_problems"]
