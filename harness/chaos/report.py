"""The chaos run's report: per fault, the failovers, the longest leaderless stretch, recovery and
takeover, the stale writes refused, and every violation; its table; and ``make chaos``'s command line."""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import harness.chaos
from harness.chaos.backends import BACKENDS
from harness.chaos.cluster import Chaos
from harness.chaos.model import FAULTS, LOST_BY_STORAGE, SEND_SLACK, ChaosSettings
from harness.services import MySQLServer


def report(chaos: Chaos) -> dict:
    per_fault = []
    for fault in FAULTS:
        rounds = [r for r in chaos.rounds if r.fault == fault]
        if not rounds:
            continue
        per_fault.append({
            "fault": fault,
            "rounds": len(rounds),
            "failovers": sum(r.failovers for r in rounds),
            "longest_leaderless_s": round(max(r.longest_leaderless for r in rounds), 2),
            "longest_recovery_s": round(max(r.recovery for r in rounds), 2),
            "longest_takeover_s": (round(max(r.takeover for r in rounds if r.takeover is not None), 2)
                                   if any(r.takeover is not None for r in rounds) else None),
            "stale_writes_refused": sum(r.stale_refused for r in rounds),
            "readings_buffered_flushed": sum(r.buffered_flushed for r in rounds),
            "connections_killed": sum(r.connections_killed for r in rounds),
            "violations": sum(len(r.violations) for r in rounds),
        })
    violations = [f"round {r.number} ({r.fault}): {v}" for r in chaos.rounds for v in r.violations]
    text = " ".join(violations)
    return {
        "backend": chaos.s.backend,
        "settings": asdict(chaos.s),
        "rounds": len(chaos.rounds),
        "per_fault": per_fault,
        "overlaps": text.count("overlap "),
        "stale_rows": text.count("stale row "),
        "lost_readings": len(chaos.judge.lost),
        "readings_verified": len(chaos.judge.verified),
        "rows": len(chaos.rows()),
        # Judged from Azure's HTTP wire log only (harness/chaos/backends.py says why).
        "longest_act_after_last_grant_s": (round(chaos.judge.longest_act_after_grant, 2)
                                           if chaos.backend.wire_log else None),
        "in_flight_across_freeze": chaos.judge.in_flight_across_freeze,
        "writes_across_freeze": chaos.judge.writes_across_freeze,
        "leases_lost_by_storage": chaos.count_lines(LOST_BY_STORAGE),
        "violations": violations,
    }


def render(report: dict) -> str:
    header = ("fault", "rounds", "failovers", "longest leaderless s", "longest recovery s",
              "longest takeover s", "stale writes refused", "readings buffered+flushed", "violations")
    keys = ("fault", "rounds", "failovers", "longest_leaderless_s", "longest_recovery_s", "longest_takeover_s",
            "stale_writes_refused", "readings_buffered_flushed", "violations")
    rows = [["-" if row[k] is None else str(row[k]) for k in keys] for row in report["per_fault"]]
    widths = [max(len(c) for c in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in (header, *rows)]
    s = report["settings"]
    lines.insert(1, "  ".join("-" * w for w in widths))
    killed = sum(row.get("connections_killed", 0) for row in report["per_fault"])
    within = (f"longest time a leader acted after its last granted acquire/renewal: "
              f"{report['longest_act_after_last_grant_s']} s (bound: the acting window, LEASE_DURATION - "
              f"{s.get('safety_margin', 2):g} s, + {SEND_SLACK} s from the deadline check to the request)"
              if report.get("longest_act_after_last_grant_s") is not None else
              "acts within the lease of a granted call: not judged on this backend (no wire log of its protocol; "
              "the journal checks and the store's term rule hold the same line)")
    lines += [
        "",
        f"backend {report.get('backend', 'azure')}: {report['rounds']} rounds, {s['instances']} instances, "
        f"seed {s['seed']}, lease {s['lease']:g} s, renew {s['renew']:g} s, acquire {s['acquire']:g} s, "
        f"slow {s['slow_latency']:g} s per request",
        f"overlaps: {report['overlaps']}   stale rows: {report['stale_rows']}   "
        f"lost readings: {report['lost_readings']} (of {report['readings_verified']} checked)   "
        f"rows: {report['rows']}",
        "recovery: from the fault's healing to a leader acting (bound LEASE_DURATION + ACQUIRE_INTERVAL + 3 s = "
        f"{s['lease'] + s['acquire'] + 3:g} s); takeover: from the fault itself to another instance acting",
        within,
        *([f"the leader's connections killed at the server (conn-kill): {killed}"] if killed else []),
        f"leases the storage lost (the next holder waited before acting): {report['leases_lost_by_storage']}",
        "fetches begun before a freeze that reached the server just after it (in flight, tolerated): "
        f"{report['in_flight_across_freeze']}",
        "rows committed just after a freeze by the leader frozen inside its write (held to the term rule "
        f"only): {report['writes_across_freeze']}",
        "PASS" if not report["violations"] else f"FAIL: {len(report['violations'])} violations",
        *report["violations"],
    ]
    return "\n".join(lines)


def run_chaos(settings: ChaosSettings, mysql: MySQLServer, workdir: Path,
              say: Callable[[str], None] = print) -> dict:
    with Chaos(settings, mysql, workdir, say) as chaos:
        chaos.run()
        result = report(chaos)
    (workdir / "chaos-report.json").write_text(json.dumps(result, indent=2))
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make chaos", description=(harness.chaos.__doc__ or "").split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--instances", type=int, default=3, choices=range(3, 6), metavar="3..5")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--backend", default="azure", choices=BACKENDS,
                        help="the election backend of the rounds (default azure)")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="work in DIR and keep it: each instance's output, the journal, Azurite's data")
    args = parser.parse_args(argv)
    settings = ChaosSettings(rounds=args.rounds, instances=args.instances, seed=args.seed, backend=args.backend)
    mysql = MySQLServer.from_environment()
    mysql.check()
    say = lambda line: print(line, flush=True)  # noqa: E731
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        result = run_chaos(settings, mysql, args.keep, say=say)
    else:
        with tempfile.TemporaryDirectory(prefix="chaos-") as workdir:
            result = run_chaos(settings, mysql, Path(workdir), say=say)
    print(render(result))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0 if not result["violations"] else 1
