"""The benchmark: failover times, contention and steady-state cost of the election, measured on real
processes against Azurite (started here) and MariaDB/MySQL (a database per group, dropped after), and
the same failover and cost at rest for each election backend (azure, zookeeper, raft).

    PYTHONPATH=src:. python -m bench [--trials 5] [--designs seed,microsoft,client-go,ours]
                                     [--backends azure,zookeeper,raft]
                                     [--contenders 3,10,50,100] [--contention-trials 3]

Evidence, not log parsing: the leadership journal (LEADERSHIP_JOURNAL) gives the CLOCK_MONOTONIC
moment each instance started acting as leader; the signal's moment is taken here on the same clock.
Every azure instance talks to the storage through its own TCP proxy (harness/tcpproxy.py) whose
HttpWatch sees every request and its answer: request counts, latencies, lease grants. A ZooKeeper
group has a server of its own (the Debian package's jar), whose `mntr` counters give the packets at
rest and whose ephemeral znodes show who is in line. A Raft group's members reach each other only
through one TCP proxy per direction of each link (every member gets its own RAFT_PEERS), where a
LineCounter (harness/counting.py) reads every newline-delimited JSON message.

Phases: (1) every design x {crash, graceful} is its own group of 3 instances on its own blob and
database, all groups at once (their failovers are seconds of sleeping, not CPU); (2) every backend x
{crash, graceful} likewise, all at once (the azure column reuses the 'ours' design's groups of phase
1 when they ran: the same product with the same settings); (3) contention, azure (ours) only, one
contender count at a time: a quiet window (requests/s, latency, CPU, RSS), then crash trials with the
same kill phases for every count.

This module is the command line and the run's outline; designs.py says what is compared, group.py
and backend_groups.py run the instances of one group, phases.py the three phases, measure.py reads
/proc, targets.py judges the results and report.py prints them (plot.py draws the timeline).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench.designs import BACKENDS, DESIGNS, ZOOKEEPER_TICK, backend_unavailable
from bench.measure import LoadMeter
from bench.peer_groups import CONTENDERS, peer_unavailable
from bench.peer_phase import run_peers
from bench.phases import Bench
from bench.report import report
from bench.targets import backend_targets, estimate, steady_cost, targets


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make bench BENCH_ARGS=...", description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5, help="crash and graceful trials per design and backend (5)")
    parser.add_argument("--designs", default="seed,microsoft,client-go,ours",
                        help=f"comma-separated, from {', '.join(DESIGNS)} ('' for none)")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help=f"election backends, one column each: comma-separated, from {', '.join(BACKENDS)} "
                             "('' for none); azure reuses the 'ours' design's trials when that runs")
    parser.add_argument("--peers", default="zookeeper,raft",
                        help="real peers against ours, from zookeeper (kazoo's Election), raft (PySyncObj) "
                             "('' for none)")
    parser.add_argument("--peer-trials", type=int, default=10,
                        help="crash and graceful trials per contender in the real-peer phase, interleaved (10)")
    parser.add_argument("--zk-tick", type=float, default=ZOOKEEPER_TICK,
                        help=f"tickTime of the benchmark's ZooKeeper servers, s ({ZOOKEEPER_TICK:g}: the packaged "
                             "zoo.cfg's); a session expires up to one tick after its timeout")
    parser.add_argument("--contenders", default="3,10,50,100", help="contender counts for ours ('' for none)")
    parser.add_argument("--backend-contenders", default="100",
                        help="contender counts run on every backend besides its 3 instances: the cost at rest (in "
                             "total and per contender), then crash trials ('' for none; Raft beyond 7 members: n/a)")
    parser.add_argument("--backend-contention-trials", type=int, default=2,
                        help="crash trials per backend and contender count of --backend-contenders (2)")
    parser.add_argument("--contention-trials", type=int, default=3, help="crash trials per contender count (3)")
    parser.add_argument("--window", type=float, default=20, help="quiet measuring window per contender count, s")
    parser.add_argument("--design-window", type=float,
                        help="quiet window per design before its first kill, s (default max(30, 3 x renew, 3 x retry))")
    parser.add_argument("--settle", type=float, default=3, help="wait after every contender is polling, s")
    parser.add_argument("--seed", default="1", help="random seed for the kill phases")
    parser.add_argument("--out", help="output directory (default bench-results/<time>)")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG")
    parser.add_argument("--report", metavar="RESULTS_JSON",
                        help="run nothing: print the table (and redraw the PNG beside it) from an earlier results.json")
    args = parser.parse_args(argv)
    args.designs = [d.strip() for d in args.designs.split(",") if d.strip()]
    unknown = [d for d in args.designs if d not in DESIGNS]
    if unknown:
        parser.error(f"unknown design(s) {', '.join(unknown)}; known: {', '.join(DESIGNS)}")
    args.contenders = [int(n) for n in args.contenders.split(",") if n.strip()]
    if any(n < 2 for n in args.contenders):
        parser.error("--contenders: at least 2 instances per count")
    args.backend_contenders = [int(n) for n in args.backend_contenders.split(",") if n.strip()]
    if any(n < 2 for n in args.backend_contenders):
        parser.error("--backend-contenders: at least 2 instances per count")
    args.backends = list(dict.fromkeys(b.strip() for b in args.backends.split(",") if b.strip()))
    unknown = [b for b in args.backends if b not in BACKENDS]
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(BACKENDS)}")
    if not args.report:
        missing = {b: why for b in args.backends if (why := backend_unavailable(b))}
        if missing:
            parser.error("; ".join(f"backend {b} cannot run here: {why}" for b, why in missing.items())
                         + f" (leave it out: --backends {','.join(b for b in args.backends if b not in missing)!r})")
    args.peers = list(dict.fromkeys(b.strip() for b in args.peers.split(",") if b.strip()))
    unknown = [b for b in args.peers if b not in CONTENDERS]
    if unknown:
        parser.error(f"--peers: unknown backend(s) {', '.join(unknown)}; known: {', '.join(CONTENDERS)}")
    if not args.report:
        missing = {b: why for b in args.peers if (why := backend_unavailable(b) or peer_unavailable(b))}
        if missing:
            parser.error("; ".join(f"the real peers of {b} cannot run here: {why}" for b, why in missing.items())
                         + f" (leave them out: --peers {','.join(b for b in args.peers if b not in missing)!r})")
    if args.zk_tick <= 0:
        parser.error("--zk-tick: a positive number of seconds")
    return args


def _interrupted(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def reprint(path: Path, plot: bool) -> int:
    results = json.loads(path.read_text())
    results["targets"] = targets(results)
    results["backend_targets"] = backend_targets(results)
    print(report(results))
    if plot:
        try:
            from bench.plot import timeline
        except ImportError as exc:
            print(f"timeline PNG skipped: {exc} (make bench installs matplotlib)")
        else:
            print(f"timeline: {timeline(results, path.with_name('timeline.png'))}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.report:
        return reprint(Path(args.report), not args.no_plot)
    # SIGTERM like Ctrl-C: leave through Bench.__exit__, which stops every instance and drops the databases.
    signal.signal(signal.SIGTERM, _interrupted)
    try:
        return run(args)
    except RuntimeError as exc:  # a service the bench needs is missing or did not start: the message says which
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("bench: interrupted; every instance it started is stopped", file=sys.stderr)
        return 130


def run(args: argparse.Namespace) -> int:
    """The whole benchmark: phases, results.json, the report and the picture."""
    wall_start = time.monotonic()
    with Bench(args) as bench:
        bench.say(f"benchmark: designs {','.join(args.designs) or 'none'} and backends "
                  f"{','.join(args.backends) or 'none'} x {args.trials} crash + {args.trials} graceful trials, "
                  f"contenders {args.contenders or 'none'} x {args.contention_trials} crash trials; "
                  f"estimated {estimate(args) / 60:.1f} min; output {bench.out}")
        bench.say(f"machine before: load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
        meter = LoadMeter()
        results: dict[str, Any] = {"started": datetime.now(timezone.utc).isoformat(), "args": vars(args),
                                   "python": sys.version.split()[0], "designs": {}, "backends": {},
                                   "contention": [], "errors": []}
        if args.trials and args.designs:
            bench.say("phase 1: designs side by side (all groups at once)")
            phase = bench.run_designs()
            results["designs"], results["designs_load"] = phase["designs"], phase["load"]
            results["errors"] += phase["errors"]
        if args.trials and args.backends:
            bench.say("phase 2: election backends side by side (all groups at once)")
            phase = bench.run_backends()
            results["backends"], results["backends_load"] = phase["backends"], phase["load"]
            results["errors"] += phase["errors"]
        if args.peer_trials and args.peers:
            bench.say(f"phase 2b: real peers against ours ({', '.join(args.peers)}), {args.peer_trials} interleaved "
                      "trials per contender and signal (all cells at once)")
            phase = run_peers(bench)
            results["peers"], results["peers_problems"], results["peers_load"] = (
                phase["peers"], phase["problems"], phase["load"])
            # A peer's problem is a finding about the peer; one of ours is a failure of the product.
            results["errors"] += [f"{p['group']}: {p['kind']}: {p['detail']}" for p in phase["problems"]
                                  if p["contender"] in ("ours", "-")]
        for n in args.contenders:
            bench.say(f"phase 3: {n} contenders")
            try:
                results["contention"].append(bench.run_contention(n))
            except Exception as exc:  # noqa: BLE001 - reported, the other counts still run
                bench.say(f"  {n} contenders FAILED: {exc}")
                results["errors"].append(f"contention {n}: {exc}")
        results["steady_cost"] = steady_cost(results)
        results["targets"] = targets(results)
        results["backend_targets"] = backend_targets(results)
        results["runtime_s"] = round(time.monotonic() - wall_start, 1)
        results["estimated_s"] = round(estimate(args), 1)
        results["load"] = meter.read()
        results["timeline"] = [
            {"group": g.name, "design": g.design.key, "backend": g.backend, "slots": [s.name for s in g.slots],
             "intervals": g.leadership_intervals(g.end or time.monotonic()), "kills": g.kills,
             "trials": g.trials, "end": g.end or time.monotonic()}
            for g in bench.groups
            if not g.name.startswith("peer-") and len(g.slots) <= 10]  # no 100-contender groups in the picture
        results["t0_mono"] = bench.t0
        json_path = bench.out / "results.json"
        json_path.write_text(json.dumps(results, indent=2, default=str))
        print()
        print(report(results))
        print()
        if not args.no_plot:
            try:
                from bench.plot import timeline
            except ImportError as exc:
                print(f"timeline PNG skipped: {exc} (make bench installs matplotlib)")
            else:
                png = timeline(results, bench.out / "timeline.png")
                print(f"timeline: {png}")
        print(f"results: {json_path}")
        print(f"runtime {results['runtime_s'] / 60:.1f} min (estimated {results['estimated_s'] / 60:.1f} min)")
        return 1 if results.get("errors") else 0
