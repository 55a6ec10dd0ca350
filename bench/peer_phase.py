"""The real-peer phase: ours against each peer's own library, on the same server and timeouts, in
one run. A *cell* is a backend and a signal (zookeeper/raft x crash/graceful); its groups (ours and
each peer, 3 processes each) run side by side, and their trials are interleaved: trial k of every
group of the cell, one group after the other (the order alternating), all with the same random kill
phase, before trial k+1. Crash cells first measure the cost at rest, all their groups in the same
quiet window. Afterwards every group's journal is checked for two leaders at once; a trial in which
nobody took over is recorded as such, and the group goes on."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

from bench.designs import BACKEND_DESIGNS, design_window
from bench.measure import LoadMeter, summary
from bench.peer_groups import CONTENDERS, PeerGroup, make_group

MODES = ("crash", "graceful")


def run_cell(bench: Any, backend: str, mode: str, groups: list[PeerGroup], problems: list[dict[str, Any]]) -> None:
    try:
        for group in groups:
            group.start_all()
        if mode == "crash":
            window = design_window(BACKEND_DESIGNS[backend], bench.args.design_window)
            steady: dict[str, dict[str, Any]] = {}

            def quiet(group: PeerGroup) -> None:
                try:
                    steady[group.name] = group.quiet_window(window)
                except Exception as exc:  # noqa: BLE001 - reported; the trials still run
                    problems.append({"group": group.name, "contender": group.contender.key, "kind": "error",
                                     "detail": f"quiet window: {exc}"})

            threads = [threading.Thread(target=quiet, args=(g,), daemon=True) for g in groups]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            for group in groups:
                group.steady = steady.get(group.name)
                s = group.steady or {}
                bench.say(f"  {group.name} at rest: CPU leader {s.get('leader_cpu_pct')} %, follower "
                          f"{s.get('worker_cpu_pct')} %; wake-ups/s leader {s.get('leader_wakes_per_s')}, follower "
                          f"{s.get('worker_wakes_per_s')}; RSS leader {s.get('leader_rss_mib')} MiB, follower "
                          f"{s.get('worker_rss_mib')} MiB")
        for number in range(1, bench.args.peer_trials + 1):
            order = groups if number % 2 else list(reversed(groups))
            for group in order:
                rng = random.Random(f"{bench.args.seed}-peers-{backend}-{mode}-{number}")
                try:
                    group.trial(mode, number, rng, restart=number < bench.args.peer_trials)
                except Exception as exc:  # noqa: BLE001 - a finding: nobody took over (or a group broke)
                    kind = "no takeover" if isinstance(exc, TimeoutError) else "error"
                    problems.append({"group": group.name, "contender": group.contender.key, "mode": mode,
                                     "trial": number, "kind": kind, "detail": str(exc)})
                    bench.say(f"  {group.name} trial {number}: {kind}: {exc}")
                    if number < bench.args.peer_trials:
                        for slot in group.slots:
                            if not slot.alive:
                                group.start(slot)
    except Exception as exc:  # noqa: BLE001 - reported; the other cells go on
        problems.append({"group": f"{backend}-{mode}", "contender": "-", "kind": "error", "detail": str(exc)})
        bench.say(f"  peers {backend}-{mode} FAILED: {exc}")
    finally:
        for group in groups:
            group.end = time.monotonic()


def ratio(ours: float | None, peer: float | None) -> float | None:
    if ours is None or peer is None or peer <= 0:
        return None
    return round(ours / peer, 2)


def run_peers(bench: Any) -> dict[str, Any]:
    """Every cell of the backends asked for, all cells at once; results by backend."""
    backends = list(bench.args.peers)
    problems: list[dict[str, Any]] = []
    cells: dict[tuple[str, str], list[PeerGroup]] = {}
    lock = threading.Lock()

    def make(backend: str, mode: str) -> None:
        made = []
        try:
            for contender in CONTENDERS[backend]:
                made.append(make_group(bench, f"peer-{backend}-{mode}-{contender.key}", contender))
        except Exception as exc:  # noqa: BLE001 - reported; the other cells still run
            for group in made:
                group.stop_all()
            problems.append({"group": f"{backend}-{mode}", "contender": "-", "kind": "error",
                             "detail": f"could not set up: {exc}"})
            bench.say(f"  peers {backend}-{mode} FAILED to set up: {exc}")
            return
        with lock:
            cells[backend, mode] = made

    makers = [threading.Thread(target=make, args=(b, m), daemon=True) for b in backends for m in MODES]
    for thread in makers:
        thread.start()
    for thread in makers:
        thread.join()
    for groups in cells.values():
        bench.groups.extend(groups)
    meter = LoadMeter()
    runners = [threading.Thread(target=run_cell, args=(bench, b, m, g, problems), daemon=True)
               for (b, m), g in cells.items()]
    for thread in runners:
        thread.start()
    for thread in runners:
        thread.join()
    load = meter.read()
    for groups in cells.values():
        for group in groups:
            for overlap in group.overlaps():
                problems.append({"group": group.name, "contender": group.contender.key, "kind": "two leaders",
                                 "detail": overlap})
    results: dict[str, Any] = {}
    for backend in backends:
        column: dict[str, Any] = {"settings": BACKEND_DESIGNS[backend].shown_as, "contenders": {}}
        if backend == "zookeeper":
            column["settings"] += f", server tick {bench.args.zk_tick:g} s, a server per group"
        for contender in CONTENDERS[backend]:
            entry: dict[str, Any] = {"label": contender.label, "note": contender.note}
            for mode in MODES:
                group = next((g for g in cells.get((backend, mode), []) if g.contender is contender), None)
                trials = group.trials if group else []
                entry[mode] = summary([t["failover_s"] for t in trials])
                entry[mode]["trials"] = trials
                if mode == "crash":
                    entry["rest"] = group.steady if group else None
            column["contenders"][contender.key] = entry
        column["ratios"] = ratios(column["contenders"])
        results[backend] = column
    for groups in cells.values():
        for group in groups:
            group.stop_all()
    return {"peers": results, "problems": problems, "load": load}


def ratios(contenders: dict[str, Any]) -> dict[str, dict[str, float | None]]:
    """ours / peer for each peer: failover medians, CPU, wake-ups and memory at rest (lower is better
    for all)."""
    ours = contenders["ours"]
    out = {}
    for key, peer in contenders.items():
        if key == "ours":
            continue
        mine, theirs = ours.get("rest") or {}, peer.get("rest") or {}
        out[key] = {
            "crash_median": ratio(ours["crash"]["median"], peer["crash"]["median"]),
            "graceful_median": ratio(ours["graceful"]["median"], peer["graceful"]["median"]),
            "leader_cpu": ratio(mine.get("leader_cpu_pct"), theirs.get("leader_cpu_pct")),
            "follower_cpu": ratio(mine.get("worker_cpu_pct"), theirs.get("worker_cpu_pct")),
            "leader_wakes": ratio(mine.get("leader_wakes_per_s"), theirs.get("leader_wakes_per_s")),
            "follower_wakes": ratio(mine.get("worker_wakes_per_s"), theirs.get("worker_wakes_per_s")),
            "leader_rss": ratio(mine.get("leader_rss_mib"), theirs.get("leader_rss_mib")),
            "follower_rss": ratio(mine.get("worker_rss_mib"), theirs.get("worker_rss_mib")),
        }
    return out
