"""The partition run: every scenario x backend that applies (or a chosen few), its report table,
and the command line (``python -m harness.partitions --help``; ``make chaos`` runs it after the
chaos rounds)."""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import harness.partitions
from harness.partitions.network import cleanup_leftovers, unavailable
from harness.partitions.scenarios import APPLIES, FLAP_TOTAL, SCENARIOS, ScenarioResult, run_scenario

HEADER = ("scenario", "backend", "leader changes", "leaderless s", "bound s", "takeover s", "takeover bound s",
          "overlaps", "stale rows accepted", "stale writes refused", "violations")
NOT_APPLICABLE = {("storage", "raft"): "raft has no storage/coordination service: its peers elect among "
                                       "themselves (isolation and split cut them)"}


def plan(backends: list[str], chosen: list[str] | None) -> list[tuple[str, str]]:
    """(scenario, backend) pairs, in a stable order: each backend's applicable scenarios."""
    return [(scenario, backend) for backend in backends for scenario in SCENARIOS
            if scenario in APPLIES[backend] and (not chosen or scenario in chosen)]


def run_all(pairs: list[tuple[str, str]], workdir: Path, say: Callable[[str], None] = print,
            flap_seconds: float = FLAP_TOTAL) -> list[ScenarioResult]:
    results = []
    for scenario, backend in pairs:
        directory = workdir / f"{backend}-{scenario}"
        directory.mkdir(parents=True, exist_ok=True)
        result = run_scenario(backend, scenario, directory, flap_seconds=flap_seconds)
        results.append(result)
        say(f"{scenario:<12} {backend:<10} leaderless={result.longest_leaderless:5.2f}s "
            f"(bound {result.bound:g}) overlaps={result.overlaps} violations={len(result.violations)}"
            + "".join(f"\n    ! {v}" for v in result.violations))
    return results


def rows(results: list[ScenarioResult]) -> list[list[str]]:
    return [[r.scenario, r.backend, str(r.failovers), f"{r.longest_leaderless:.2f}", f"{r.bound:g}",
             "-" if r.takeover is None else f"{r.takeover:.2f}", f"{r.takeover_bound:g}", str(r.overlaps),
             str(r.stale_rows), str(r.stale_refused), str(len(r.violations))] for r in results]


def render(results: list[ScenarioResult]) -> str:
    body = rows(results)
    widths = [max(len(c) for c in column) for column in zip(HEADER, *body, strict=True)]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in (HEADER, *body)]
    lines.insert(1, "  ".join("-" * w for w in widths))
    skipped = {(s, b) for s in SCENARIOS for b in {r.backend for r in results} if s not in APPLIES[b]}
    lines += [f"({s}, {b}): not applicable: {NOT_APPLICABLE.get((s, b), 'not part of this backend set')}"
              for s, b in sorted(skipped) if (s, b) in NOT_APPLICABLE]
    lines += [
        "leaderless: the longest stretch without an acting leader from the cut to the end (the leadership journal,",
        "CLOCK_MONOTONIC); a majority can talk throughout, so it must stay within the backend's bound",
        "(harness/partitions/backends.py). takeover: from the cut to another instance acting (its bound: the",
        "cut-off leader's lease, then the same bound). stale rows accepted: rows of a lower term stored after",
        "a higher one (the SQLite store's fencing check must refuse them); stale writes refused: its refusals.",
    ]
    violations = [f"{r.scenario}/{r.backend}: {v}" for r in results for v in r.violations]
    lines.append("PASS" if not violations else f"FAIL: {len(violations)} violations")
    lines += violations
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m harness.partitions",
                                     description=(harness.partitions.__doc__ or "").split("\n\n")[0])
    parser.add_argument("--backend", action="append", choices=tuple(APPLIES),
                        help="only this backend (repeatable; default: all three)")
    parser.add_argument("--scenario", action="append", choices=tuple(SCENARIOS),
                        help="only this scenario (repeatable; default: every one that applies)")
    parser.add_argument("--flap-seconds", type=float, default=FLAP_TOTAL,
                        help="how long the flapping scenario cuts 2 s / heals 2 s (default: %(default)g)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="work in DIR and keep it (each instance's log, "
                                                                 "the journal, the SQLite store)")
    parser.add_argument("--cleanup", action="store_true",
                        help="only remove namespaces and bridges left by a harness that died, then exit")
    args = parser.parse_args(argv)
    reason = unavailable()
    if reason:
        print(f"partitions: skipped: {reason}")
        return 0
    for name in cleanup_leftovers():
        print(f"partitions: removed a leftover {name}")
    if args.cleanup:
        return 0
    pairs = plan(args.backend or list(APPLIES), args.scenario)
    say = lambda line: print(line, flush=True)  # noqa: E731
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        results = run_all(pairs, args.keep, say, args.flap_seconds)
    else:
        workdir = Path(tempfile.mkdtemp(prefix="partitions-"))
        try:
            results = run_all(pairs, workdir, say, args.flap_seconds)
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
    print(render(results))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0 if not any(r.violations for r in results) else 1
