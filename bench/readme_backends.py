"""The README's "Three strategies, measured" table: its measured rows generated from bench runs, between
``<!-- backend-table:start -->`` and ``<!-- backend-table:end -->``.

The rows that describe (strategy, needs, what bounds the failover, choose it when) are prose: they
stay as written in the README, and only the rows named in ``MEASURED`` are replaced. The numbers go
through a small summary (``summarize``), committed beside the README (docs/readme-backends.json), so
that a test can check that the README is what this module writes from it.
"""

from __future__ import annotations

from typing import Any

START, END = "<!-- backend-table:start -->", "<!-- backend-table:end -->"
BACKENDS = {"azure": "Azure blob lease", "zookeeper": "ZooKeeper", "raft": "Raft", "postgres": "PostgreSQL",
            "redis": "Redis"}
CRASH, GRACEFUL = "crash failover (SIGKILL): median (max)", "graceful failover (SIGTERM): median (max)"
REST3, REST100 = "cost at rest, 3 instances", "cost at rest, 100 instances"
CRASH100 = "crash failover (SIGKILL), 100 instances: median (max)"
MEASURED = (CRASH, GRACEFUL, REST3, REST100, CRASH100)
MANY = "100"
# A cell that cannot be measured, by design (bench/many.py says why in results.json and the printout).
NOT_APPLICABLE = "n/a: every instance would be a voting member"


def _failover(summary: dict[str, Any] | None) -> str:
    """ "13.8 s (14.5)", "25 ms (37)": the median, then the max in the median's unit."""
    if not summary or not summary.get("n"):
        return "-"
    median, high = summary["median"], summary["max"]
    if median < 0.1:
        return f"{median * 1000:.0f} ms ({high * 1000:.0f})"
    return f"{median:.2f} s ({high:.2f})"


def _rate(value: float) -> str:
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}"


def _cost(backend: str, rest: dict[str, Any] | None, instances: int) -> str:
    """What a backend costs at rest, in the unit its server bills or counts: in all, and per instance."""
    if rest and rest.get("not_applicable"):
        return NOT_APPLICABLE
    if not rest or rest.get("per_s") is None:
        return "-"
    per_s = rest["per_s"]
    if backend == "redis" and rest.get("script_calls_per_s") is not None:
        calls = rest["script_calls_per_s"]
        return (f"{_rate(calls)} script calls/s, {calls / instances:.2f} per instance ({_rate(per_s)} commands with "
                "those the scripts run)")
    unit = {"azure": "billed storage requests/s", "zookeeper": "packets/s at the server", "raft": "peer messages/s",
            "postgres": "transactions/s (one per call)"}.get(backend, "/s")
    return f"{_rate(per_s)} {unit}, {per_s / instances:.2f} per instance"


def _command(args: dict[str, Any]) -> str:
    """The bench command that gives a run with these arguments (those the table depends on)."""
    def joined(key: str) -> str:
        return ",".join(str(v) for v in args.get(key) or [])
    parts = [f"--designs '{joined('designs')}'", f"--backends {joined('backends')}", f"--trials {args.get('trials')}",
             f"--contenders '{joined('contenders')}'"]
    if args.get("contenders"):
        parts.append(f"--contention-trials {args.get('contention_trials')}")
    parts.append(f"--backend-contenders '{joined('backend_contenders')}'")
    if args.get("backend_contenders") and args.get("backend_contention_trials") is not None:
        parts.append(f"--backend-contention-trials {args['backend_contention_trials']}")
    parts.append("--peers ''")
    return 'make bench BENCH_ARGS="' + " ".join(parts) + '"'


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """What the table needs from the runs' results.json, each backend from the last run that has it."""
    sources: list[dict[str, Any]] = []
    backends: dict[str, Any] = {}
    for results in runs:
        columns = results.get("backends") or {}
        mine = [b for b in BACKENDS if b in columns]
        if not mine:
            continue
        load = results.get("backends_load") or results.get("load") or {}
        sources.append({"started": str(results.get("started", "?"))[:10],
                        "command": _command(results.get("args") or {}),
                        "machine_busy_pct": load.get("machine_busy_pct"), "cpus": load.get("cpus")})
        contention = {str(row["contenders"]): row for row in results.get("contention") or []}
        for backend in mine:
            column = columns[backend]
            rest = column.get("rest") or {}
            many = (column.get("rest_contenders") or {}).get(MANY) or {}
            crash_many = many.get("crash") or {}
            if backend == "azure" and not many.get("per_s") and MANY in contention:
                # Or the contention phase's (ours, 15/5/2, the same defaults).
                many = {"per_s": contention[MANY]["requests_per_s"]}
                crash_many = contention[MANY].get("crash") or {}
            entry: dict[str, Any] = {"source": len(sources) - 1, "settings": column.get("settings")}
            for mode in ("crash", "graceful"):
                stats = column.get(mode) or {}
                entry[mode] = {k: stats.get(k) for k in ("n", "median", "max")}
            for key, r in (("rest", rest), ("many", many)):
                calls = r.get("script_calls_per_s")
                if calls is None and "by_command_per_s" in r:
                    calls = r["by_command_per_s"].get("evalsha", 0) + r["by_command_per_s"].get("eval", 0)
                entry[key] = {"per_s": r.get("per_s"), "script_calls_per_s": calls} if r else None
            if many.get("not_applicable"):
                entry["many"] = {"not_applicable": True}
            entry["many_crash"] = {k: crash_many.get(k) for k in ("n", "median", "max")} if crash_many else None
            backends[backend] = entry
    if not backends:
        raise ValueError("the results have no election-backend phase ('backends'): run the bench with --backends")
    return {"sources": sources, "backends": backends}


def measured_rows(summary: dict[str, Any]) -> dict[str, str]:
    """The measured rows by label; a backend in none of the runs shows "-"."""
    columns = [summary["backends"].get(b) for b in BACKENDS]
    cells = {
        CRASH: [_failover(c and c["crash"]) for c in columns],
        GRACEFUL: [_failover(c and c["graceful"]) for c in columns],
        REST3: [_cost(b, c and c["rest"], 3) for b, c in zip(BACKENDS, columns, strict=True)],
        REST100: [_cost(b, c and c["many"], int(MANY)) for b, c in zip(BACKENDS, columns, strict=True)],
        CRASH100: [NOT_APPLICABLE if c and (c.get("many") or {}).get("not_applicable") else
                   _failover(c and c.get("many_crash")) for c in columns],
    }
    return {label: f"| {label} | " + " | ".join(row) + " |" for label, row in cells.items()}


def caption(summary: dict[str, Any]) -> str:
    runs = []
    for index, source in enumerate(summary["sources"]):
        # In the table's order, not the summary's (its JSON keys are sorted).
        mine = [b for b in BACKENDS if b in summary["backends"] and summary["backends"][b]["source"] == index]
        names = ", ".join(BACKENDS[b] for b in mine)
        if not names:
            continue
        trials = sorted({summary["backends"][b]["crash"]["n"] for b in mine})
        # One run for all five needs no names.
        named = "" if len(mine) == len(summary["backends"]) == len(BACKENDS) else f"{names}: "
        runs.append(f"{named}`{source['command']}` of {source['started']} "
                    f"({'/'.join(str(n) for n in trials)} crash and graceful trials each; the machine "
                    f"{source['machine_busy_pct']} % busy on {source['cpus']} CPUs)")
    missing = [name for b, name in BACKENDS.items() if b not in summary["backends"]]
    gone = f" Not in these runs, so \"-\": {', '.join(missing)}." if missing else ""
    return ("The measured rows are generated by `python -m bench.readme_table` from " + "; ".join(runs) + ". "
            "3 instances per group with each backend's defaults, a server of its own per group where there is one; "
            "failover = the signal to the next leader's first act (CLOCK_MONOTONIC); the 100-instance rows: one "
            "group of 100, a quiet window then crash trials (`--backend-contenders`); a \"-\": not measured; "
            "Raft's contenders are its voting members, and a 100-member cluster is not a Raft deployment, so "
            f"\"n/a\".{gone}")


def render(summary: dict[str, Any], previous: str) -> str:
    """The block between the markers: ``previous``'s table with its measured rows replaced (the
    others, prose, kept in place; a measured row it lacks is added at the end), then the caption."""
    rows = measured_rows(summary)
    table = [line for line in previous.splitlines() if line.startswith("|")]
    if len(table) < 2:
        table = ["| | " + " | ".join(BACKENDS.values()) + " |", "|---|" + "---|" * len(BACKENDS)]
    done = set()
    out = table[:2]
    for line in table[2:]:
        label = line.split("|")[1].strip()
        if label in rows:
            line = rows[label]
            done.add(label)
        out.append(line)
    out += [rows[label] for label in MEASURED if label not in done]
    return "\n".join(out) + "\n\n" + caption(summary)


def between(readme: str) -> str:
    """The text between the markers, checked to be there once each."""
    if readme.count(START) != 1 or readme.count(END) != 1 or readme.index(START) > readme.index(END):
        raise ValueError(f"the README must hold {START} and then {END}, once each")
    return readme.split(START)[1].split(END)[0]
