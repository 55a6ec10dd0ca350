"""One group of instances of the demo on the azure backend (bench/instance.py, each behind its own
TCP proxy to Azurite whose HttpWatch sees every request), and what a group does: start and stop its
instances, find its leader in the leadership journal, run one failover trial, measure its cost at
rest. bench/backend_groups.py has the same for the other election backends."""

from __future__ import annotations

import os
import random
import signal
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.designs import Design
from bench.measure import cpu_ns, cpu_pct, rounded, wakes, woken_per_s
from DistributedMutex.journal import read_journal
from harness.counting import LineCounter
from harness.httpwatch import HttpWatch
from harness.services import connection_string
from harness.tcpproxy import TcpProxy

if TYPE_CHECKING:
    from bench.phases import Bench

INSTANCE = Path(__file__).resolve().parent / "instance.py"


@dataclass
class Life:
    pid: int
    started: float
    ended: float | None = None


@dataclass
class Link:
    """One direction of a Raft link: this member's connections to one peer, through a proxy."""

    proxy: TcpProxy
    counter: LineCounter


@dataclass
class Slot:
    name: str
    proxy: TcpProxy | None = None  # azure: between the instance and Azurite
    watch: HttpWatch | None = None
    port: int | None = None  # raft: where the member listens
    links: dict[str, Link] = field(default_factory=dict)  # raft: to each peer, by the peer's name
    process: subprocess.Popen | None = None
    lives: list[Life] = field(default_factory=list)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def life(self) -> Life:
        return self.lives[-1]


class Group:
    """``size`` instances of one design on their own blob, database and journal (the azure backend);
    ZooKeeperGroup and RaftGroup (bench/backend_groups.py) are the same with another backend."""

    backend = "azure"
    # Kill at a random phase after the leader's latest renewal seen on the wire (its lease grants).
    anchored_kills = True
    poll_interval = 0.02  # how often wait() looks again

    def __init__(self, bench: Bench, name: str, design: Design, size: int) -> None:
        self.bench, self.name, self.design = bench, name, design
        self.journal = bench.out / f"{name}.journal.jsonl"
        self.database = f"{bench.db_prefix}_{name.replace('-', '_')}"
        self.slots = [Slot(f"{name}-{i}") for i in range(1, size + 1)]
        self.trials: list[dict[str, Any]] = []
        self.kills: list[dict[str, Any]] = []
        self.end: float | None = None
        self.steady: dict[str, Any] | None = None
        self._closed = False
        self.setup()

    def setup(self) -> None:
        for slot in self.slots:
            slot.watch = HttpWatch()
            slot.proxy = TcpProxy(self.bench.azurite.port, watch=slot.watch).start()

    def backend_env(self, slot: Slot) -> dict[str, str]:
        d = self.design
        assert slot.proxy is not None
        return {
            "ELECTION_BACKEND": "azure",
            "AZURE_STORAGE_CONNECTION_STRING": connection_string(slot.proxy.port),
            "CONTAINER_NAME": self.bench.container,
            "BLOB_NAME": self.name,
            # What the product accepts; an emulated design gets its real renew/acquire from BENCH_EMULATE.
            "LEASE_DURATION": f"{d.lease:g}",
            "RENEW_INTERVAL": f"{d.renew:g}" if not d.emulated else "5",
            "ACQUIRE_INTERVAL": f"{d.acquire:g}" if not d.emulated else "2",
        }

    def env(self, slot: Slot) -> dict[str, str]:
        ours = ("MYSQL_", "AZURE_", "BENCH_", "ZOOKEEPER_", "RAFT_", "POSTGRES_", "REDIS_", "ELECTION_BACKEND")
        env = {k: v for k, v in os.environ.items() if not k.startswith(ours)}
        env.update(self.backend_env(slot))
        env.update({
            "OPENWEATHER_API_KEY": self.bench.weather.api_key,
            "OPENWEATHER_URL": self.bench.weather.url,
            "WEATHER_CITIES": "Hanoi,Tokyo",
            "MYSQL_HOST": self.bench.mysql.host, "MYSQL_PORT": str(self.bench.mysql.port),
            "MYSQL_USER": self.bench.mysql.user, "MYSQL_PASSWORD": self.bench.mysql.password,
            "MYSQL_DATABASE": self.database,
            "LEADERSHIP_JOURNAL": str(self.journal),
            "INSTANCE_ID": slot.name,
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        })
        spec = self.design.spec()
        if spec:
            env["BENCH_EMULATE"] = spec
        return env

    def start(self, slot: Slot) -> None:
        log = (self.bench.out / "logs" / f"{slot.name}.log").open("ab")
        slot.process = subprocess.Popen([sys.executable, str(INSTANCE)], env=self.env(slot), cwd=self.bench.out,
                                        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        log.close()
        slot.lives.append(Life(slot.process.pid, time.monotonic()))

    def start_all(self) -> None:
        for slot in self.slots:
            self.start(slot)

    def stop_all(self) -> None:
        for slot in self.slots:
            if slot.alive:
                slot.process.send_signal(signal.SIGTERM)
        for slot in self.slots:
            self._reap(slot, 10)
        if not self._closed:
            self._closed = True
            self.close()

    def close(self) -> None:
        """Stop what the group started besides its instances (proxies, servers)."""
        for slot in self.slots:
            if slot.proxy is not None:
                slot.proxy.close()
            for link in slot.links.values():
                link.proxy.close()

    def _reap(self, slot: Slot, timeout: float) -> None:
        if slot.process is None:
            return
        try:
            slot.process.wait(timeout)
        except subprocess.TimeoutExpired:
            slot.process.kill()
            slot.process.wait()
        if slot.life.ended is None:
            slot.life.ended = time.monotonic()

    # -- reading the journal ------------------------------------------------------------------

    def records(self) -> list[dict[str, Any]]:
        return read_journal(self.journal)

    def current_leader(self) -> tuple[Slot, dict[str, Any]] | None:
        open_starts: dict[tuple[str, int], dict[str, Any]] = {}
        for record in self.records():
            key = (record["instance"], record["pid"])
            if record["event"] == "start":
                open_starts[key] = record
            else:
                open_starts.pop(key, None)
        for slot in self.slots:
            if slot.alive and (slot.name, slot.life.pid) in open_starts:
                return slot, open_starts[slot.name, slot.life.pid]
        return None

    def wait(self, predicate, timeout: float, what: str):
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                dead = [f"{s.name} (exit {s.process.returncode})" for s in self.slots
                        if s.process is not None and s.process.poll() is not None]
                raise TimeoutError(f"{self.name}: {what} within {timeout:g} s"
                                   + (f"; exited: {', '.join(dead)}" if dead else "")
                                   + f" (logs in {self.bench.out / 'logs'})")
            time.sleep(self.poll_interval)

    def ready(self) -> bool:
        """Every instance is up and has had an answer from the storage since it (re)started."""
        def answered_since_start(slot: Slot) -> bool:
            assert slot.watch is not None
            for e in reversed(slot.watch.exchanges):  # newest first: usually the first one decides
                if e.sent < slot.life.started:
                    return False
                if e.status is not None:
                    return True
            return False

        return all(slot.alive and answered_since_start(slot) for slot in self.slots)

    # What ready() checks, in the words of a timeout's message.
    readiness = "not every instance reached the storage"

    def wait_steady(self, timeout: float) -> tuple[Slot, dict[str, Any]]:
        self.wait(self.current_leader, timeout, "no leader")
        self.wait(self.ready, timeout, self.readiness)
        return self.wait(self.current_leader, timeout, "no leader")

    def renewal_marks(self, slot: Slot) -> list[float]:
        """When the leader's renewals were seen outside it, during its current life: lease grants."""
        assert slot.watch is not None
        return [g for g in slot.watch.lease_grants() if g >= slot.life.started]

    # -- one failover trial -------------------------------------------------------------------

    def trial(self, mode: str, number: int, rng: random.Random, restart: bool = True) -> dict[str, Any]:
        """Kill (or stop) the leader, time the next one's first act; then start the victim again
        under its own name (a Raft member with its RAFT_ID and RAFT_DATA_DIR) unless it was the last."""
        d = self.design
        budget = d.lease + 2 * d.max_poll + 30
        leader, start = self.wait_steady(budget + 60)
        # Kill at a uniformly random moment of the renewal cycle.
        phase = rng.uniform(0, d.renew)
        last: float | None = None
        if self.anchored_kills:
            # Phase after the latest lease grant the proxy saw.
            while True:
                last = max(self.renewal_marks(leader))
                target = last + phase
                now = time.monotonic()
                if target >= now:
                    time.sleep(target - now)
                    if max(self.renewal_marks(leader)) == last:
                        break
                else:
                    self.wait(lambda last=last: max(self.renewal_marks(leader)) > last, d.renew * 2 + 10,
                              "the leader did not renew")
        else:
            # No single renewal to anchor on (ZooKeeper's pings and requests, Raft's heartbeats are
            # more frequent than the backend's renew interval): a random delay is a random phase.
            time.sleep(phase)
            marks = self.renewal_marks(leader)
            last = max(marks) if marks else None
        victim_pid = leader.life.pid
        signum = signal.SIGKILL if mode == "crash" else signal.SIGTERM
        sent = time.monotonic()
        os.kill(victim_pid, signum)
        if mode == "crash":
            leader.life.ended = sent  # a SIGKILLed process stops acting (and calling) at once
        self.kills.append({"slot": leader.name, "at": sent, "mode": mode})

        def successor() -> dict[str, Any] | None:
            return next((r for r in self.records() if r["event"] == "start" and r["mono"] > sent
                         and (r["instance"], r["pid"]) != (leader.name, victim_pid)), None)

        new = self.wait(successor, budget, f"no new leader after the {mode} of {leader.name}")
        self._reap(leader, 10)
        stop = next((r for r in self.records() if r["event"] == "stop" and r["pid"] == victim_pid), None)
        since = round(sent - last, 3) if last is not None else None
        result = {
            "group": self.name, "design": d.key, "backend": self.backend, "mode": mode, "trial": number,
            "victim": leader.name, "victim_pid": victim_pid, "victim_term": start["term"], "phase_s": round(phase, 3),
            "since_last_grant_s": since if self.backend == "azure" else None,
            "since_last_renewal_s": since, "renewal_seen_as": self.renewal_evidence,
            "signal_mono": sent,
            "victim_stopped_acting_mono": stop["acting_until"] if stop else None,
            "new_leader": new["instance"], "new_term": new["term"], "new_start_mono": new["mono"],
            "failover_s": round(new["mono"] - sent, 4),  # 0.1 ms: a hand-over takes a few
        }
        self.trials.append(result)
        after = f" (killed {sent - last:.2f} s after its last {self.renewal_evidence})" if last is not None else ""
        self.bench.say(f"  {self.name} trial {number}: {leader.name} {mode} -> {new['instance']} leads "
                       f"after {result['failover_s']:.4f} s{after}")
        if restart:
            self.start(leader)
        return result

    renewal_evidence = "lease grant"

    # -- accounting -----------------------------------------------------------------------------

    def cost_snapshot(self) -> Any:
        return None

    def cost(self, leader: Slot, w0: float, w1: float, before: Any, after: Any) -> dict[str, Any]:
        """The backend's traffic at rest over [w0, w1]; ``per_s`` is the whole group's."""
        counts = {}
        for slot in self.slots:
            assert slot.watch is not None
            counts[slot.name] = sum(1 for e in list(slot.watch.exchanges) if w0 <= e.sent <= w1)
        window = w1 - w0
        workers = [60 * c / window for name, c in counts.items() if name != leader.name]
        return {"counted": "storage requests", "per_s": round(sum(counts.values()) / window, 2),
                "how": "requests seen at each instance's own TCP proxy to Azurite (HttpWatch)",
                "leader_per_min": round(60 * counts[leader.name] / window, 1),
                "worker_per_min": round(statistics.mean(workers), 1) if workers else None}

    def server_pids(self) -> dict[str, int]:
        """Servers of this group alone, whose CPU is this group's cost too."""
        return {}

    def quiet_window(self, seconds: float) -> dict[str, Any]:
        """The cost at rest: the backend's traffic (requests, packets or messages), and the CPU of
        every instance (and of the group's own server), while nothing happens."""
        leader, _ = self.wait_steady(self.design.lease + 60)
        pids = {slot.name: slot.life.pid for slot in self.slots if slot.alive}
        servers = self.server_pids()
        before_ns = {name: cpu_ns(pid) for name, pid in {**pids, **servers}.items()}
        before_wakes = {name: wakes(pid) for name, pid in pids.items()}
        before = self.cost_snapshot()
        w0 = time.monotonic()
        time.sleep(seconds)
        w1 = time.monotonic()
        after = self.cost_snapshot()
        after_ns = {name: cpu_ns(pid) for name, pid in {**pids, **servers}.items()}
        after_wakes = {name: wakes(pid) for name, pid in pids.items()}
        still = self.current_leader()
        window = w1 - w0
        cpu = {name: rounded(cpu_pct(start, end, window), 3)
               for name, start in before_ns.items() if start is not None and (end := after_ns[name]) is not None}
        workers = [v for name, v in cpu.items() if name in pids and name != leader.name]
        woken = {name: (rounded(woken_per_s(start, end, window), 1), len(end))
                 for name, start in before_wakes.items()
                 if start is not None and (end := after_wakes[name]) is not None}
        worker_wakes = [w for name, (w, _) in woken.items() if name != leader.name]
        result = {"window_s": round(window, 1), "leader": leader.name,
                  "leader_changed": still is None or still[0] is not leader,
                  "cpu_pct": cpu, "leader_cpu_pct": cpu.get(leader.name),
                  "worker_cpu_pct": rounded(statistics.mean(workers)) if workers else None,
                  "server_cpu_pct": rounded(sum(cpu[name] for name in servers if name in cpu)) if servers else None,
                  "cpu_how": "the process's CPU-time clock (clock_getcpuclockid) over the window, % of one core",
                  "wakes_per_s": {name: w for name, (w, _) in woken.items()},
                  "threads": {name: n for name, (_, n) in woken.items()},
                  "leader_wakes_per_s": woken[leader.name][0] if leader.name in woken else None,
                  "worker_wakes_per_s": rounded(statistics.mean(worker_wakes), 1) if worker_wakes else None,
                  "wakes_how": "voluntary context switches of the process's threads (/proc/<pid>/task/*/status) "
                               "over the window, per second; a thread that ended within it is not counted"}
        result.update(self.cost(leader, w0, w1, before, after))
        per_s = result.get("per_s")
        result["per_contender_per_s"] = rounded(per_s / len(self.slots), 3) if per_s is not None else None
        return result

    def leadership_intervals(self, end: float) -> list[dict[str, Any]]:
        """[{slot, pid, term, start, stop, killed}] from the journal; an interval of a killed process
        ends at its kill."""
        opened: dict[tuple[str, int], dict[str, Any]] = {}
        intervals = []
        for record in self.records():
            key = (record["instance"], record["pid"])
            if record["event"] == "start":
                opened[key] = {"slot": record["instance"], "pid": record["pid"], "term": record["term"],
                               "start": record["mono"], "stop": None, "killed": False}
            elif key in opened:
                interval = opened.pop(key)
                interval["stop"] = record["acting_until"]
                intervals.append(interval)
        ended = {(s.name, life.pid): life.ended for s in self.slots for life in s.lives}
        for key, interval in opened.items():
            interval["stop"], interval["killed"] = ended.get(key) or end, ended.get(key) is not None
            intervals.append(interval)
        return sorted(intervals, key=lambda i: i["start"])

    def request_rates(self, end: float) -> dict[str, Any]:
        """Requests per minute while leading and while not, over the whole run of the group."""
        intervals = self.leadership_intervals(end)
        lead_n = lead_t = work_n = work_t = 0.0
        for slot in self.slots:
            assert slot.watch is not None
            exchanges = list(slot.watch.exchanges)
            for life in slot.lives:
                mine = [e.sent for e in exchanges if life.started <= e.sent <= (life.ended or end)]
                if not mine:
                    continue
                lo, hi = mine[0], life.ended or end
                led = [(max(lo, i["start"]), min(hi, i["stop"])) for i in intervals
                       if i["pid"] == life.pid and i["slot"] == slot.name]
                led = [(a, b) for a, b in led if b > a]
                in_lead = sum(1 for t in mine if any(a <= t <= b for a, b in led))
                lead_n += in_lead
                lead_t += sum(b - a for a, b in led)
                work_n += len(mine) - in_lead
                work_t += (hi - lo) - sum(b - a for a, b in led)
        return {"leader_per_min": round(60 * lead_n / lead_t, 1) if lead_t else None,
                "worker_per_min": round(60 * work_n / work_t, 1) if work_t else None,
                "leader_minutes": round(lead_t / 60, 2), "worker_minutes": round(work_t / 60, 2)}
