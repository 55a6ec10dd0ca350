"""The benchmark's run: the services every group shares (Azurite, the weather stand-in, MySQL) and
its three phases: the designs side by side, the election backends side by side, contention."""

from __future__ import annotations

import argparse
import random
import statistics
import threading
import time
import uuid
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

from bench.backend_groups import GROUPS
from bench.designs import AZURE_SETTINGS, BACKEND_DESIGNS, DESIGNS, design_window
from bench.group import Group
from bench.many import many_at
from bench.measure import LoadMeter, cpu_ns, cpu_pct, percentile, rounded, rss_mib, summary, to_ms
from harness.fake_openweather import FakeOpenWeather
from harness.services import Azurite, MySQLServer

ROOT = Path(__file__).resolve().parents[1]


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        self.out = Path(args.out or ROOT / "bench-results" / stamp).resolve()
        (self.out / "logs").mkdir(parents=True, exist_ok=True)
        self.db_prefix = f"bench_{uuid.uuid4().hex[:8]}"
        self.container = f"bench-{uuid.uuid4().hex[:8]}"
        self.mysql = MySQLServer.from_environment()
        self.t0 = time.monotonic()
        self.groups: list[Group] = []
        self.design_groups: dict[tuple[str, str], Group] = {}
        self._print_lock = threading.Lock()

    def say(self, text: str) -> None:
        with self._print_lock:
            print(f"[{time.monotonic() - self.t0:6.1f}s] {text}", flush=True)

    def __enter__(self) -> Bench:
        self.mysql.check()
        self.azurite = Azurite().start()
        try:
            self.weather = FakeOpenWeather().start()
        except BaseException:
            self.azurite.stop()  # __exit__ never runs when __enter__ fails
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        for group in self.groups:
            try:
                group.stop_all()
            except Exception:  # noqa: BLE001 - clean-up only
                pass
            try:
                self.mysql.drop_database(group.database)
            except Exception:  # noqa: BLE001 - clean-up only
                pass
        self.weather.stop()
        self.azurite.stop()

    # -- phase 1: the designs side by side -------------------------------------------------------

    def run_group(self, group: Group, mode: str, errors: list[str]) -> None:
        """Start the group, measure its cost at rest (crash groups), then its trials."""
        try:
            group.start_all()
            if mode == "crash":
                group.steady = group.quiet_window(design_window(group.design, self.args.design_window))
                s = group.steady
                extra = (f" ({s['leader_per_min']} requests/min as leader, {s['worker_per_min']} per worker)"
                         if group.backend == "azure" else "")
                self.say(f"  {group.name} at rest: {s['per_s']} {s['counted']}/s{extra}; CPU leader "
                         f"{s['leader_cpu_pct']} %, worker {s['worker_cpu_pct']} %"
                         + (f", server {s['server_cpu_pct']} %" if s["server_cpu_pct"] is not None else "")
                         + f"; over {s['window_s']} s")
            rng = random.Random(f"{self.args.seed}-{group.name}")
            for number in range(1, self.args.trials + 1):
                group.trial(mode, number, rng, restart=number < self.args.trials)
        except Exception as exc:  # noqa: BLE001 - reported in the results
            errors.append(f"{group.name}: {exc}")
            self.say(f"  {group.name} FAILED: {exc}")
        finally:
            group.end = time.monotonic()

    def run_side_by_side(self, groups: list[tuple[Group, str]], errors: list[str]) -> dict[str, Any]:
        meter = LoadMeter()
        threads = [threading.Thread(target=self.run_group, args=(*pair, errors), daemon=True) for pair in groups]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return meter.read()

    def run_designs(self) -> dict[str, Any]:
        designs = [DESIGNS[k] for k in self.args.designs]
        groups = []
        for design in designs:
            for mode in ("crash", "graceful"):
                if self.args.trials > 0:
                    group = Group(self, f"{design.key}-{mode}", design, 3)
                    groups.append((group, mode))
                    self.design_groups[design.key, mode] = group
        self.groups.extend(g for g, _ in groups)
        errors: list[str] = []
        load = self.run_side_by_side(groups, errors)
        results = {}
        for design in designs:
            row: dict[str, Any] = {"label": design.label, "timing": design.shown_as, "emulated": design.emulated,
                                   "note": design.note, "design": asdict(design)}
            for group, mode in groups:
                if group.design is design:
                    row[mode] = summary([t["failover_s"] for t in group.trials])
                    row[mode]["trials"] = group.trials
                    row[f"{mode}_whole_run_requests"] = group.request_rates(group.end or time.monotonic())
                    if group.steady is not None:
                        row["steady_requests"] = group.steady
            results[design.key] = row
        for group, _ in groups:
            group.stop_all()
        return {"designs": results, "load": load, "errors": errors}

    # -- phase 2: the backends side by side -------------------------------------------------------

    def run_backends(self) -> dict[str, Any]:
        """One crash group and one graceful group of 3 per backend, all at once; the azure column
        reuses the 'ours' design's groups when phase 1 ran them (the same product, the same settings)."""
        errors: list[str] = []
        reused = {mode: self.design_groups.get(("ours", mode)) for mode in ("crash", "graceful")}
        reuse_azure = all(reused.values())
        pairs: dict[tuple[str, str], Group] = {}
        lock = threading.Lock()

        def make(backend: str, mode: str) -> None:
            try:
                group = GROUPS[backend](self, f"{backend}-{mode}", BACKEND_DESIGNS[backend], 3)
            except Exception as exc:  # noqa: BLE001 - reported; the other backends still run
                errors.append(f"{backend}-{mode}: could not set up: {exc}")
                self.say(f"  {backend}-{mode} FAILED to set up: {exc}")
                return
            with lock:
                pairs[backend, mode] = group

        # Set up side by side too: a ZooKeeper group starts a JVM first.
        makers = []
        for backend in self.args.backends:
            if backend == "azure" and reuse_azure:
                pairs.update({(backend, mode): group for mode, group in reused.items() if group is not None})
                continue
            makers += [threading.Thread(target=make, args=(backend, mode), daemon=True)
                       for mode in ("crash", "graceful")]
        for thread in makers:
            thread.start()
        for thread in makers:
            thread.join()
        self.groups += [pairs[b, m] for b in self.args.backends for m in ("crash", "graceful")
                        if (b, m) in pairs and not (b == "azure" and reuse_azure)]
        fresh = [(group, mode) for (backend, mode), group in pairs.items() if not (backend == "azure" and reuse_azure)]
        if "azure" in self.args.backends and reuse_azure:
            self.say("  azure: the 'ours' design's groups above (the same product, the same settings)")
        load = self.run_side_by_side(fresh, errors) if fresh else None
        columns = {}
        for backend in self.args.backends:
            design = BACKEND_DESIGNS[backend]
            settings = AZURE_SETTINGS if backend == "azure" else design.shown_as
            if backend == "zookeeper":
                settings += f", server tick {self.args.zk_tick:g} s"
            column: dict[str, Any] = {
                "backend": backend, "label": design.label, "settings": settings, "note": design.note,
                "timing": {"lease": design.lease, "renew": design.renew, "acquire": design.acquire,
                           "safety_margin": design.safety_margin},
                "source": ("the 'ours' design's groups of phase 1 (the same product and settings)"
                           if backend == "azure" and reuse_azure else f"groups {backend}-crash, {backend}-graceful"),
            }
            for mode in ("crash", "graceful"):
                group = pairs.get((backend, mode))
                column[mode] = summary([t["failover_s"] for t in group.trials] if group else [])
                column[mode]["trials"] = group.trials if group else []
                if mode == "crash":
                    column["rest"] = group.steady if group else None
            columns[backend] = column
        for group, _ in fresh:
            group.stop_all()
        # Every backend with many contenders (the cost at rest, crash trials), one count at a time.
        for backend in self.args.backends:
            columns[backend]["rest_contenders"] = {}
            for n in self.args.backend_contenders:
                design = BACKEND_DESIGNS[backend]
                try:
                    many = many_at(self, backend, design, n, design_window(design, self.args.design_window))
                    columns[backend]["rest_contenders"][str(n)] = many
                    errors += [f"{backend}, {n} contenders: {e}" for e in many.get("errors", [])]
                except Exception as exc:  # noqa: BLE001 - reported; the other counts still run
                    errors.append(f"{backend}, {n} contenders: {exc}")
                    self.say(f"  {backend}, {n} contenders FAILED: {exc}")
        return {"backends": columns, "load": load, "errors": errors}

    # -- phase 3: contention ---------------------------------------------------------------------

    def run_contention(self, n: int) -> dict[str, Any]:
        design = DESIGNS["ours"]
        group = Group(self, f"cont{n}", design, n)
        self.groups.append(group)
        meter = LoadMeter()
        started = time.monotonic()
        group.start_all()
        group.wait_steady(60 + 2 * n)
        self.say(f"  {n} contenders up and polling after {time.monotonic() - started:.1f} s")
        time.sleep(self.args.settle)
        leader, _ = group.wait_steady(30)
        pids = {slot.name: slot.life.pid for slot in group.slots}
        before = {name: cpu_ns(pid) for name, pid in pids.items()}
        w0 = time.monotonic()
        time.sleep(self.args.window)
        w1 = time.monotonic()
        after = {name: cpu_ns(pid) for name, pid in pids.items()}
        rss = [r for r in (rss_mib(pid) for pid in pids.values()) if r is not None]
        steady_leader = group.current_leader()
        if steady_leader is None or steady_leader[0] is not leader:
            self.say(f"  warning: the leader changed during the {n}-contender window")
        window = w1 - w0
        cpu = {name: cpu_pct(start, end, window)
               for name, start in before.items() if start is not None and (end := after[name]) is not None}
        worker_cpu = [v for name, v in cpu.items() if name != leader.name]
        per_slot = {}
        latencies, lease_latencies, total = [], [], 0
        for slot in group.slots:
            seen = [e for e in list(slot.watch.exchanges) if w0 <= e.sent <= w1]
            per_slot[slot.name] = len(seen)
            total += len(seen)
            for e in seen:
                if e.answered is not None:
                    latencies.append(e.answered - e.sent)
                    if e.lease_action:
                        lease_latencies.append(e.answered - e.sent)
        workers_per_min = [60 * c / window for name, c in per_slot.items() if name != leader.name]
        result: dict[str, Any] = {
            "contenders": n, "startup_s": round(w0 - started, 1), "window_s": round(window, 1),
            "requests_per_s": round(total / window, 2),
            "call_latency_ms": {"p50": to_ms(percentile(latencies, 50)), "p99": to_ms(percentile(latencies, 99)),
                                "max": to_ms(max(latencies) if latencies else None), "n": len(latencies)},
            "lease_action_latency_ms": {"p50": to_ms(percentile(lease_latencies, 50)),
                                        "p99": to_ms(percentile(lease_latencies, 99)), "n": len(lease_latencies)},
            "idle_worker_cpu_pct": {"mean": rounded(statistics.mean(worker_cpu) if worker_cpu else None),
                                    "max": rounded(max(worker_cpu) if worker_cpu else None)},
            "leader_cpu_pct": rounded(cpu.get(leader.name)),
            "rss_mib": {"median": rounded(statistics.median(rss) if rss else None, 1),
                        "max": rounded(max(rss) if rss else None, 1), "total": rounded(sum(rss), 0)},
            "leader_requests_per_min": round(60 * per_slot[leader.name] / window, 1),
            "worker_requests_per_min": rounded(statistics.mean(workers_per_min) if workers_per_min else None, 1),
        }
        self.say(f"  {n} contenders: {result['requests_per_s']} requests/s, p99 call "
                 f"{result['call_latency_ms']['p99']} ms, idle worker {result['idle_worker_cpu_pct']['mean']} % CPU, "
                 f"RSS {result['rss_mib']['median']} MiB")
        trials = []
        for number in range(1, self.args.contention_trials + 1):
            # The same kill phases for every contender count (common random numbers).
            trials.append(group.trial("crash", number, random.Random(f"{self.args.seed}-contention-{number}"),
                                      restart=number < self.args.contention_trials))
        result["crash"] = summary([t["failover_s"] for t in trials])
        result["crash"]["trials"] = trials
        result["load"] = meter.read()
        group.end = time.monotonic()
        group.stop_all()
        try:
            self.mysql.drop_database(group.database)
        except Exception:  # noqa: BLE001 - clean-up only
            pass
        return result
