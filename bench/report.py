"""The printed report: the designs' failover table, one column per election backend, contention,
the steady cost, and the targets' verdicts, from a results dictionary (a run's or results.json's)."""

from __future__ import annotations

from typing import Any


def fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[fmt(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True)))
              for row in cells]
    return "\n".join(lines)


def backend_table(columns: dict[str, Any]) -> str:
    """One column per backend: failover by signal, then the cost at rest."""
    names = list(columns)

    def row(label: str, value) -> list[Any]:
        return [label, *(value(columns[b]) for b in names)]

    def seconds(mode: str, stat: str):
        return lambda c: fmt(c[mode][stat], 3)

    def rest(key: str, digits: int = 2):
        return lambda c: fmt((c.get("rest") or {}).get(key), digits)

    rows = [row("settings", lambda c: c["settings"])]
    for mode, signal_name in (("crash", "SIGKILL"), ("graceful", "SIGTERM")):
        rows.append(row(f"{signal_name} trials", lambda c, mode=mode: c[mode]["n"]))
        for stat in ("min", "median", "p95", "max"):
            rows.append(row(f"{signal_name} {stat} s", seconds(mode, stat)))
    rows += [
        row("at rest: counted", lambda c: (c.get("rest") or {}).get("counted", "-")),
        row("at rest: per second, all 3", rest("per_s")),
        row("at rest: per second, per contender", rest("per_contender_per_s", 3)),
        row("at rest: leader CPU %", rest("leader_cpu_pct")),
        row("at rest: worker CPU % (mean)", rest("worker_cpu_pct")),
        row("at rest: server CPU %", rest("server_cpu_pct")),
        row("at rest: window s", rest("window_s", 1)),
    ]
    counts = sorted({int(n) for c in columns.values() for n in (c.get("rest_contenders") or {})})
    for n in counts:
        def many(key: str, digits: int = 2, n: int = n) -> Any:
            def cell(c: dict[str, Any]) -> str:
                r = (c.get("rest_contenders") or {}).get(str(n)) or {}
                if r.get("not_applicable"):
                    return "n/a"
                value = (r.get("crash") or {}).get(key) if key in ("n", "median", "max") else r.get(key)
                return fmt(value, digits)
            return cell
        rows += [row(f"at rest: per second, {n} contenders", many("per_s")),
                 row(f"at rest: per second, per contender of {n}", many("per_contender_per_s", 3)),
                 row(f"{n} contenders: SIGKILL trials", many("n", 0)),
                 row(f"{n} contenders: SIGKILL median s", many("median", 3)),
                 row(f"{n} contenders: SIGKILL max s", many("max", 3))]
    text = ("Failover by election backend: seconds from the signal to the next leader's first act as leader "
            "(journal 'start'),\nand the cost at rest (a quiet window before the first kill); 3 instances per group, "
            "each backend's defaults\n" + table(["", *names], rows))
    notes = []
    for b, c in columns.items():
        r = c.get("rest") or {}
        detail = ""
        if b == "zookeeper" and r:
            detail = f" (received {fmt(r.get('received_per_s'))}/s, sent {fmt(r.get('sent_per_s'))}/s)"
        if b == "raft" and r:
            detail = " (" + ", ".join(f"{k} {v:g}/s" for k, v in (r.get("by_type_per_s") or {}).items()) + ")"
        if b == "azure" and r:
            detail = f" (leader {fmt(r.get('leader_per_min'), 1)}/min, worker {fmt(r.get('worker_per_min'), 1)}/min)"
        if b == "redis" and r:
            detail = (f" (script calls {fmt(r.get('script_calls_per_s'))}/s; "
                      + ", ".join(f"{k} {v:g}/s" for k, v in (r.get("by_command_per_s") or {}).items()) + ")")
        many = c.get("rest_contenders") or {}
        if many:
            detail += "; " + ", ".join(f"{n} contenders: n/a: {m['not_applicable']}" if m.get("not_applicable") else
                                       f"{n} contenders: {fmt(m.get('per_s'))}/s, worker CPU "
                                       f"{fmt(m.get('worker_cpu_pct'))} %, started in {fmt(m.get('startup_s'), 1)} s"
                                       + "".join(f"; {e}" for e in m.get("errors") or [])
                                       for n, m in many.items())
        how = r.get("how", "not measured")
        notes.append(f"  {b}: {how}{detail}; source: {c['source']}")
    return text + "\n" + "\n".join(notes)


def report(results: dict[str, Any]) -> str:
    from bench.peer_report import peers_report  # it formats with fmt and table, from here

    parts = []
    designs = results.get("designs", {})
    if designs:
        rows = []
        for row in designs.values():
            for mode in ("crash", "graceful"):
                if mode not in row:
                    continue
                s = row[mode]
                rates = row.get("steady_requests", {}) if mode == "crash" else {}
                rows.append([row["label"], row["timing"], "SIGKILL" if mode == "crash" else "SIGTERM", s["n"],
                             s["min"], s["median"], s["p95"], s["max"], rates.get("leader_per_min"),
                             rates.get("worker_per_min")])
        parts.append("Failover: seconds from the signal to another instance's first act as leader (journal 'start')\n"
                     + table(["design", "lease/renew/retry", "signal", "n", "min", "median", "p95", "max",
                              "leader req/min*", "worker req/min*"], rows))
        parts.append("* storage requests per minute in a quiet window before the first kill (by default 3 renewals"
                     " and 3 polls\n  at least), counted at each instance's TCP proxy; one value per design, on its"
                     " SIGKILL row")
        emulated = [f"  {r['label']}: {r['note']}" for r in designs.values() if r["emulated"]]
        if emulated:
            parts.append("Rows marked (emulated) run this repository's election loop with that design's timing and "
                         "release behaviour,\nnot the design's own code:\n" + "\n".join(emulated))
    columns = results.get("backends", {})
    if columns:
        parts.append(backend_table(columns))
    peers = peers_report(results)
    if peers:
        parts.append(peers)
    contention = results.get("contention", [])
    if contention:
        rows = [[r["contenders"], r["crash"]["n"], r["crash"]["median"], r["crash"]["max"], r["requests_per_s"],
                 r["call_latency_ms"]["p50"], r["call_latency_ms"]["p99"], r["lease_action_latency_ms"]["p99"],
                 r["idle_worker_cpu_pct"]["mean"], r["idle_worker_cpu_pct"]["max"], r["rss_mib"]["median"],
                 r["startup_s"]] for r in contention]
        parts.append("Contention (ours, 15/5/2): crash failover, and a quiet window before the kills\n" + table(
            ["contenders", "n", "crash median s", "crash max s", "storage req/s", "p50 call ms", "p99 call ms",
             "p99 renew ms", "idle worker CPU %", "max worker CPU %", "RSS MiB/instance", "start-up s"], rows))
    cost = results.get("steady_cost")
    if cost and cost["leader_per_min"] is not None:
        parts.append(
            f"Steady-state storage requests (ours, from {cost['source']}):\n"
            f"  leader {fmt(cost['leader_per_min'], 1)}/min = {cost['leader_per_month']:,}/month;"
            f" each worker {fmt(cost['worker_per_min'], 1)}/min = {cost['worker_per_month']:,}/month\n"
            f"  expected: leader {cost['expected']['leader_per_min']:g}/min, worker "
            f"{cost['expected']['worker_per_min']:g}/min ({cost['expected']['why']}).\n"
            "  Every request is billed; its price category (Get Blob Properties is 'Other' on general-purpose"
            " v2) is in\n  learn.microsoft.com/azure/storage/blobs/map-rest-apis-transaction-categories; multiply by"
            " your region's price per 10,000.")
    lines = []
    for t in results.get("targets", []):
        line = f"  {t['verdict']:<12} {t['target']}: "
        if t.get("value") is None:
            line += "not measured" + (f" ({t['reason']})" if t.get("reason") else "")
        else:
            line += f"{t['value']:g} {t['unit']} (limit {t['limit']:g} {t['unit']})"
            if t["verdict"] == "MISS":
                line += f", over by {t['by']:g} {t['unit']}; likely: {t['reason']}"
        lines.append(line)
    if lines:
        parts.append("Targets (defaults 15/5/2):\n" + "\n".join(lines))
    backend_lines = []
    for t in results.get("backend_targets", []):
        line = f"  {t['verdict']:<12} {t['target']}: "
        if t.get("value") is None:
            line += "not measured"
        else:
            line += f"{t['value']:g} s"
            if t["verdict"] == "MISS":
                line += f", over by {t['by']:g} s"
        backend_lines.append(line)
    if backend_lines:
        parts.append("Backend targets (each backend's defaults):\n" + "\n".join(backend_lines))
    load = results.get("load", {})
    if load:
        parts.append("Machine: " + ", ".join(f"{k}: {v}" for k, v in load.items()))
    return "\n\n".join(parts)
