"""Partitions on real sockets, the short set (harness/partitions/; `make chaos` runs every scenario
x backend): each instance in its own network namespace, links cut with nftables, the chaos
harness's history checks on the result. And the harness's hygiene: everything it makes is removed,
also when a scenario fails half-way.

Needs root, `ip` and `nft`: skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest

from harness.chaos.invariants import leaderless_gaps, overlaps, recovery_after, row_violations
from harness.chaos.model import Interval
from harness.partitions.backends import AzureCluster, RaftCluster
from harness.partitions.network import PREFIX, Network, NetworkError, cleanup_leftovers, ours, run, unavailable
from harness.partitions.scenarios import ScenarioResult, run_scenario

REASON = unavailable()
needs_netns = pytest.mark.skipif(REASON is not None, reason=f"partition harness: {REASON}")


@pytest.fixture(scope="module", autouse=True)
def no_leftovers() -> None:
    """A harness killed before its clean-up (its pid gone) left namespaces or a bridge: remove them."""
    if REASON is None:
        cleanup_leftovers()


def check(result: ScenarioResult) -> None:
    summary = (f"{result.scenario}/{result.backend}: leaderless {result.longest_leaderless:.2f} s "
               f"(bound {result.bound:g} s), takeover {result.takeover} s, {result.rows} rows")
    assert result.violations == [], summary + "\n" + "\n".join(result.violations)
    # The evidence was there: the cut cost the leader its leadership, another took over, readings were stored.
    assert result.failovers >= 1 and result.takeover is not None, summary
    assert result.rows > 0 and result.overlaps == 0 and result.stale_rows == 0, summary
    assert result.longest_leaderless <= result.bound, summary


@needs_netns
def test_raft_leader_isolated(tmp_path: Path) -> None:
    check(run_scenario("raft", "isolation", tmp_path))


@needs_netns
def test_raft_leader_heard_but_deaf(tmp_path: Path) -> None:
    """One way only: the leader's packets reach its peers, theirs never reach it (its TCP
    connections half work: its data arrives, the acknowledgements do not)."""
    check(run_scenario("raft", "one-way-in", tmp_path))


@needs_netns
def test_zookeeper_leader_isolated(tmp_path: Path) -> None:
    check(run_scenario("zookeeper", "isolation", tmp_path))


@needs_netns
def test_azure_leader_cut_from_its_storage(tmp_path: Path) -> None:
    result = run_scenario("azure", "storage", tmp_path)
    check(result)
    # The others could take the lease only once the cut-off leader's had run out: it renewed at
    # most RENEW_INTERVAL before the cut.
    assert result.takeover is not None and result.takeover >= AzureCluster.LEASE - AzureCluster.RENEW, result


def mine(token: str) -> tuple[list[str], list[str]]:
    namespaces, links = ours()
    return [n for n in namespaces if token in n], [link for link in links if token in link]


@needs_netns
def test_everything_made_is_removed_when_a_scenario_fails(tmp_path: Path) -> None:
    # Half-way through making the network (a name given twice): what was made is removed.
    half = Network(["a", "a"])
    with pytest.raises(NetworkError, match="netns add"), half:
        pass
    assert mine(half.token) == ([], [])

    # A cluster whose scenario raises with a cut in place: processes, namespaces, links all gone.
    with pytest.raises(RuntimeError, match="the scenario failed"), RaftCluster(tmp_path) as cluster:
        token = cluster.network.token
        leader = cluster.wait_for_leader(60, "no leader")
        cluster.network.cut([leader], cluster.others(leader))
        assert "drop" in cluster.network.rules(leader)
        assert len(mine(token)[0]) == 3 and len(mine(token)[1]) == 4  # 3 namespaces; a bridge, 3 veths
        processes = [i.process for i in cluster.instances.values()]
        lock = cluster.network.lock_path
        raise RuntimeError("the scenario failed")
    assert mine(token) == ([], [])
    assert lock is not None and not lock.exists(), f"{lock} left behind"
    assert all(p.poll() is not None for p in processes)


@needs_netns
def test_leftovers_of_a_dead_harness_are_removed() -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    token = f"t{os.getpid() % 10000:04d}"
    namespace, bridge = f"{PREFIX}-{token}-{dead.pid}-x", f"{PREFIX}b{token}"
    run("ip", "netns", "add", namespace)
    try:
        run("ip", "link", "add", bridge, "type", "bridge")
        run("ip", "link", "set", "dev", bridge, "alias", f"{PREFIX} pid {dead.pid}")
        # Someone else's (a live pid: ours) stays.
        alive = f"{PREFIX}-{token}-{os.getpid()}-y"
        run("ip", "netns", "add", alive)
        removed = cleanup_leftovers()
        assert namespace in removed and bridge in removed
        assert mine(token) == ([alive], [])
    finally:
        for name in (namespace, f"{PREFIX}-{token}-{os.getpid()}-y"):
            run("ip", "netns", "del", name, check=False)
        run("ip", "link", "del", bridge, check=False)


def test_the_shared_checks_catch_an_overlap_a_stale_row_and_a_long_gap() -> None:
    """The chaos checks the scenarios are judged by can fail (no root needed: pure functions)."""
    a = Interval("node-1", 1, 10.0, 20.0, False)
    b = Interval("node-2", 2, 19.5, 30.0, False)
    c = Interval("node-3", 3, 35.0, 40.0, True)
    assert [(x.instance, y.instance, round(o, 3)) for x, y, o in overlaps([a, b, c])] == [("node-1", "node-2", 0.5)]
    stamp = datetime(2026, 1, 1, tzinfo=timezone.utc)
    rows = [(1, "Hanoi", stamp, "node-2", 2, stamp), (2, "Hanoi", stamp, "node-1", 1, stamp)]
    highest, problems = row_violations(rows, [a, b], 0, lambda _: 25.0)  # both stored at 25 (monotonic)
    assert highest == 2 and "stale row 2: term 1 after term 2" in problems
    assert any(p.startswith("row 2 written by node-1 at 25.00 while not leading") for p in problems)
    assert leaderless_gaps([a, b, c], 15.0, 40.0) == [(30.0, 35.0)]
    assert recovery_after([(30.0, 35.0)], 32.0) == 3.0


def test_a_write_in_flight_across_a_freeze_is_still_held_to_the_term_rule() -> None:
    """The chaos harness excuses the timing of a row the frozen leader committed on SIGCONT (it was
    inside its write, past the store's check), never its term."""
    a = Interval("node-1", 1, 10.0, 20.0, False)
    b = Interval("node-2", 2, 19.5, 30.0, False)
    stamp = datetime(2026, 1, 1, tzinfo=timezone.utc)
    late = [(1, "Hanoi", stamp, "node-1", 1, stamp)]  # stored at 25, inside node-2's leadership
    assert row_violations(late, [a, b], 1, lambda _: 25.0, in_flight={1}) == (1, [])
    _, problems = row_violations(late, [a, b], 1, lambda _: 25.0)
    assert any("during node-2's leadership" in p for p in problems), problems
    _, problems = row_violations(late, [a, b], 2, lambda _: 25.0, in_flight={1})
    assert problems == ["stale row 1: term 1 after term 2"]
