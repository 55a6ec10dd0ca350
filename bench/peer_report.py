"""The printed "Real peers" tables: per backend, ours and each peer side by side (failover by
signal, cost at rest), the ratio ours/peer, then every correctness problem seen on either side."""

from __future__ import annotations

from typing import Any

from bench.report import fmt, table

BACKEND_NAMES = {"zookeeper": "ZooKeeper", "raft": "Raft"}


def peer_table(backend: str, column: dict[str, Any]) -> str:
    contenders = column["contenders"]
    peers = [k for k in contenders if k != "ours"]
    ratios = column.get("ratios", {})

    def row(label: str, value, ratio_key: str | None = None) -> list[Any]:
        cells = [label, *(value(c) for c in contenders.values())]
        cells += [fmt((ratios.get(p) or {}).get(ratio_key)) if ratio_key else "" for p in peers]
        return cells

    def stat(mode: str, key: str):
        return lambda c: fmt(c[mode][key], 4)

    def rest(key: str, digits: int = 2):
        return lambda c: fmt((c.get("rest") or {}).get(key), digits)

    rows = []
    for mode, signal_name in (("crash", "SIGKILL"), ("graceful", "SIGTERM")):
        rows.append(row(f"{signal_name} trials", lambda c, mode=mode: c[mode]["n"]))
        rows.append(row(f"{signal_name} median s", stat(mode, "median"), f"{mode}_median"))
        rows.append(row(f"{signal_name} min s", stat(mode, "min")))
        rows.append(row(f"{signal_name} max s", stat(mode, "max")))
    rows += [row("at rest: leader CPU %", rest("leader_cpu_pct"), "leader_cpu"),
             row("at rest: follower CPU %", rest("worker_cpu_pct"), "follower_cpu"),
             row("at rest: leader wake-ups/s", rest("leader_wakes_per_s", 1), "leader_wakes"),
             row("at rest: follower wake-ups/s", rest("worker_wakes_per_s", 1), "follower_wakes"),
             row("at rest: leader threads", lambda c: fmt(((c.get("rest") or {}).get("threads") or {}).get(
                 (c.get("rest") or {}).get("leader")), 0)),
             row("at rest: leader RSS MiB", rest("leader_rss_mib", 1), "leader_rss"),
             row("at rest: follower RSS MiB", rest("worker_rss_mib", 1), "follower_rss")]
    if backend == "zookeeper":
        rows.append(row("at rest: packets/s at the server", rest("per_s")))
    headers = ["", *(c["label"] for c in contenders.values()), *(f"ours/{p}" for p in peers)]
    return (f"Real peers on {BACKEND_NAMES.get(backend, backend)} ({column['settings']}): their own libraries "
            "from PyPI, 3 processes each;\nfailover = signal -> the next leader's first act (journal 'start', "
            "CLOCK_MONOTONIC), trials interleaved with the same kill phases\n" + table(headers, rows))


def problems_text(problems: list[dict[str, Any]]) -> str:
    if not problems:
        return ("Correctness, either side: no two leaders at once in any journal, and every trial had a takeover.")
    lines = [f"  {p['contender']:<13} {p['group']}: {p['kind']}: {p['detail']}" for p in problems]
    return "Correctness problems seen (either side):\n" + "\n".join(lines)


def peers_report(results: dict[str, Any]) -> str:
    peers = results.get("peers") or {}
    if not peers:
        return ""
    parts = [peer_table(backend, column) for backend, column in peers.items()]
    parts.append(problems_text(results.get("peers_problems", [])))
    load = results.get("peers_load") or {}
    if load:
        parts.append(f"Machine during the real-peer phase: {load.get('machine_busy_pct')} % of all CPUs busy "
                     f"(everyone's processes), load average {load.get('loadavg_start')} -> {load.get('loadavg_end')} "
                     f"on {load.get('cpus')} CPUs: read CPU and milliseconds with that in mind")
    notes = [f"  {c['label']}: {c['note']}" for column in peers.values() for c in column["contenders"].values()]
    parts.append("Contenders:\n" + "\n".join(notes))
    return "\n\n".join(parts)
