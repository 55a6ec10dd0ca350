"""Measure a Raft cluster of demo processes: failover times, and what it costs at rest.

    PYTHONPATH=src:. .venv/bin/python -m harness.raft_measure --sizes 3,5 --rounds 5

Per cluster size (RAFT_ELECTION_TIMEOUT=1000-2000, each member behind its own proxies):

* at rest: Raft messages per second through all proxies (each line on the wire is one
  message), their bytes, and the CPU each process used (from /proc), the leader apart;
* ``--rounds`` times: SIGTERM the leader (graceful: it hands over) and SIGKILL the next one
  (crash: the others must miss its heartbeats), each stopped member started again afterwards.
  Failover is the time from the signal to the next leader's first act, both on CLOCK_MONOTONIC
  (the leadership journal's).
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness.fake_openweather import FakeOpenWeather
from harness.raft_cluster import START_TIMEOUT, RaftProcesses

log = logging.getLogger("raft_measure")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def current_leader(cluster: RaftProcesses, after: float) -> dict[str, Any]:
    return cluster.next_start(after=after, timeout=START_TIMEOUT)


def at_rest(cluster: RaftProcesses, leader: str, seconds: float) -> dict[str, float]:
    pids = {name: instance.process.pid for name, instance in cluster.running.items()}
    cpu = {name: cpu_seconds(pid) for name, pid in pids.items()}
    messages, sent = cluster.counts.messages, cluster.counts.bytes
    started = time.monotonic()
    time.sleep(seconds)  # the measuring window itself
    took = time.monotonic() - started
    used = {name: (cpu_seconds(pid) - cpu[name]) / took * 100 for name, pid in pids.items()}
    followers = [used[name] for name in used if name != leader]
    return {"messages_per_s": (cluster.counts.messages - messages) / took,
            "bytes_per_s": (cluster.counts.bytes - sent) / took,
            "cpu_leader": used[leader], "cpu_follower": statistics.mean(followers)}


def failover(cluster: RaftProcesses, leader: dict[str, Any], signum: int) -> tuple[float, dict[str, Any]]:
    """Signal the leader at a random point of its heartbeat cycle; the time to the next leader."""
    time.sleep(random.uniform(0, 0.5))
    instance = cluster.running[leader["instance"]]
    sent = instance.signal(signum)
    successor = cluster.next_start(after=sent, timeout=30)
    instance.wait(10)
    # Back under its own name (and state), once it follows: the next round needs a full cluster.
    cluster.start(leader["instance"]).wait_for(
        rf"leader is {successor['instance']} \(term {successor['term']}\)", timeout=START_TIMEOUT)
    return successor["mono"] - sent, successor


def measure(size: int, rounds: int, rest: float, workdir: Path, weather: FakeOpenWeather) -> dict[str, Any]:
    cluster = RaftProcesses(workdir, size, weather)
    try:
        for name in cluster.members:
            cluster.start(name)
        leader = current_leader(cluster, after=0.0)
        cluster.running[leader["instance"]].wait_for(r"stored \d+ readings", timeout=15)
        time.sleep(1.0)  # let start-up settle before the quiet window
        quiet = at_rest(cluster, leader["instance"], rest)
        graceful, crash = [], []
        for _ in range(rounds):
            took, leader = failover(cluster, leader, signal.SIGTERM)
            graceful.append(took)
            took, leader = failover(cluster, leader, signal.SIGKILL)
            crash.append(took)
        return {"size": size, **quiet, "graceful": graceful, "crash": crash}
    finally:
        cluster.close()


def report(result: dict[str, Any]) -> str:
    def spread(values: list[float]) -> str:
        return f"median {statistics.median(values):.3f} s (max {max(values):.3f}, n={len(values)})"
    return (f"{result['size']} processes: graceful {spread(result['graceful'])}; crash {spread(result['crash'])}; "
            f"at rest {result['messages_per_s']:.0f} messages/s ({result['bytes_per_s'] / 1000:.1f} kB/s), CPU "
            f"leader {result['cpu_leader']:.2f} %, follower {result['cpu_follower']:.2f} % of a core")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.raft_measure", description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="3,5", help="cluster sizes, comma-separated (default 3,5)")
    parser.add_argument("--rounds", type=int, default=5, help="graceful + crash failovers per size (default 5)")
    parser.add_argument("--rest", type=float, default=10.0, help="seconds of the quiet window (default 10)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stdout)
    weather = FakeOpenWeather().start()
    try:
        for size in (int(s) for s in args.sizes.split(",")):
            with tempfile.TemporaryDirectory(prefix=f"raft-measure-{size}-") as workdir:
                log.info("%s", report(measure(size, args.rounds, args.rest, Path(workdir), weather)))
    finally:
        weather.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
