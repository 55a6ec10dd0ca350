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
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from distributed_mutex_demo.backend_settings import RaftSettings, ZooKeeperSettings, parse_election_timeout
from distributed_mutex_demo.config import DEFAULTS
from DistributedMutex.journal import read_journal
from harness.counting import LineCounter, mntr
from harness.fake_openweather import FakeOpenWeather
from harness.httpwatch import HttpWatch
from harness.services import Azurite, MySQLServer, connection_string, free_port
from harness.tcpproxy import TcpProxy

ROOT = Path(__file__).resolve().parents[1]
INSTANCE = ROOT / "bench" / "instance.py"
CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Design:
    key: str
    label: str
    lease: float
    renew: float
    acquire: float
    safety_margin: float = 2
    release: bool = True
    jitter: str = "ours"  # "ours" (x U(0.9, 1.1)), "client-go" (x (1 + U(0, 1.2))), "none"
    emulated: bool = True
    shown_as: str = ""  # lease/renew/retry as the design's own documentation gives them
    note: str = ""

    def spec(self) -> str | None:
        if not self.emulated:
            return None
        return json.dumps({"lease": self.lease, "renew": self.renew, "acquire": self.acquire,
                           "safety_margin": self.safety_margin, "release": self.release, "jitter": self.jitter})

    @property
    def max_poll(self) -> float:
        return self.acquire * (2.2 if self.jitter == "client-go" else 1.1)


DESIGNS = {
    "seed": Design("seed", "seed demo (emulated)", 30, 20, 20, release=False, shown_as="30/20/20",
                   note="the original demo's constant.py; never releases the lease, so SIGTERM fails over like a "
                        "crash"),
    "microsoft": Design("microsoft", "Microsoft sample (emulated)", 15, 10, 20, shown_as="15/10/20",
                        note="mspnp leader-election sample; releases on stop, retries every 20 s (its renewals "
                             "cost our 2 requests here)"),
    "client-go": Design("client-go", "client-go (emulated)", 15, 2, 2, safety_margin=5, jitter="client-go",
                        shown_as="15/10/2",
                        note="lease 15 s, renews every RetryPeriod 2 s, steps down after RenewDeadline 10 s "
                             "(our safety margin 5 s), retry 2 s x (1 + U(0, 1.2)), ReleaseOnCancel; each renewal "
                             "here costs our 2 requests (renew + metadata stamp)"),
    "ours": Design("ours", "ours (the product)", 15, 5, 2, emulated=False, shown_as="15/5/2",
                   note="this repository, unmodified"),
}



# -- the election backends, each with the product's own defaults ------------------------------------

BACKENDS = ("azure", "zookeeper", "raft")
ZOOKEEPER_TICK = 2.0  # tickTime of ZooKeeper's packaged zoo.cfg (/etc/zookeeper/conf/zoo.cfg): 2000 ms


def _zookeeper_design() -> Design:
    session = float(DEFAULTS["ZOOKEEPER_SESSION_TIMEOUT"] or 5)
    t = ZooKeeperSettings("127.0.0.1:2181", "/election", session).timing()
    return Design("zookeeper", "ZooKeeper (the product)", t.lease_duration, t.renew_interval, t.acquire_interval,
                  t.safety_margin, emulated=False, shown_as=f"session {session:g} s",
                  note="ELECTION_BACKEND=zookeeper with its defaults; a standalone server of its own per group")


# Raft's default election timeout (min, max), seconds.
RAFT_TIMEOUT = parse_election_timeout("RAFT_ELECTION_TIMEOUT", DEFAULTS["RAFT_ELECTION_TIMEOUT"] or "1000-2000")


def _raft_design() -> Design:
    low, high = RAFT_TIMEOUT
    t = RaftSettings({"a": ("127.0.0.1", 1)}, "a", Path("."), (low, high)).timing()
    return Design("raft", "Raft (the product)", t.lease_duration, t.renew_interval, t.acquire_interval,
                  t.safety_margin, emulated=False, shown_as=f"election {low * 1000:g}-{high * 1000:g} ms",
                  note="ELECTION_BACKEND=raft with its defaults; 3 fixed members, each link through a proxy")


BACKEND_DESIGNS = {"azure": DESIGNS["ours"], "zookeeper": _zookeeper_design(), "raft": _raft_design()}
AZURE_SETTINGS = "lease 15 / renew 5 / poll 2 s"


def backend_unavailable(backend: str) -> str | None:
    """Why this checkout cannot run ``backend``, or None."""
    def missing(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is None
        except ModuleNotFoundError:
            return True

    if backend == "zookeeper":
        if missing("DistributedMutex.backends.zookeeper.backend"):
            return "src/DistributedMutex/zookeeper.py is not in this checkout (merge the zookeeper branch)"
        if missing("kazoo"):
            return "the kazoo package is not installed (make deps installs requirements.txt)"
        import harness.services

        if not hasattr(harness.services, "ZooKeeperServer"):
            return "harness/services.py has no ZooKeeperServer (merge the zookeeper branch)"
        if not (Path("/usr/share/java/zookeeper.jar").exists() and shutil.which("java")):
            return "ZooKeeper is not installed (/usr/share/java/zookeeper.jar and java: apt-get install zookeeper)"
    if backend == "raft":
        if missing("DistributedMutex.backends.raft"):
            return "src/DistributedMutex/raft/ is not in this checkout (merge the raft branch)"
        import DistributedMutex.backends.raft

        if not hasattr(DistributedMutex.backends.raft, "RaftBackend"):
            return "DistributedMutex.backends.raft has no RaftBackend yet"
    return None


# -- small measuring helpers ---------------------------------------------------------------------

def cpu_ticks(pid: int) -> int | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return int(fields[11]) + int(fields[12])  # utime + stime (fields 14 and 15 of proc(5))


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def system_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class LoadMeter:
    """The whole machine's CPU use over a stretch of time (everyone's, not just ours)."""

    def __init__(self) -> None:
        self.busy, self.total = system_busy()
        self.load_start = os.getloadavg()

    def read(self) -> dict[str, Any]:
        busy, total = system_busy()
        return {"machine_busy_pct": round(100 * (busy - self.busy) / max(1, total - self.total), 1),
                "loadavg_start": [round(x, 2) for x in self.load_start],
                "loadavg_end": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "min": None, "median": None, "p95": None, "max": None}
    return {"n": len(values), "min": round(min(values), 3), "median": round(statistics.median(values), 3),
            "p95": round(percentile(values, 95), 3), "max": round(max(values), 3)}


# -- instances -------------------------------------------------------------------------------------

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
    ZooKeeperGroup and RaftGroup below are the same with another backend."""

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
        ours = ("MYSQL_", "AZURE_", "BENCH_", "ZOOKEEPER_", "RAFT_", "ELECTION_BACKEND")
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
            "failover_s": round(new["mono"] - sent, 3),
        }
        self.trials.append(result)
        after = f" (killed {sent - last:.2f} s after its last {self.renewal_evidence})" if last is not None else ""
        self.bench.say(f"  {self.name} trial {number}: {leader.name} {mode} -> {new['instance']} leads "
                       f"after {result['failover_s']:.3f} s{after}")
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
        before_ticks = {name: cpu_ticks(pid) for name, pid in {**pids, **servers}.items()}
        before = self.cost_snapshot()
        w0 = time.monotonic()
        time.sleep(seconds)
        w1 = time.monotonic()
        after = self.cost_snapshot()
        after_ticks = {name: cpu_ticks(pid) for name, pid in {**pids, **servers}.items()}
        still = self.current_leader()
        window = w1 - w0
        cpu = {name: _r(100 * (after_ticks[name] - before_ticks[name]) / CLK_TCK / window)
               for name in before_ticks if before_ticks[name] is not None and after_ticks[name] is not None}
        workers = [v for name, v in cpu.items() if name in pids and name != leader.name]
        result = {"window_s": round(window, 1), "leader": leader.name,
                  "leader_changed": still is None or still[0] is not leader,
                  "cpu_pct": cpu, "leader_cpu_pct": cpu.get(leader.name),
                  "worker_cpu_pct": _r(statistics.mean(workers)) if workers else None,
                  "server_cpu_pct": _r(sum(cpu[name] for name in servers if name in cpu)) if servers else None,
                  "cpu_how": "utime + stime from /proc/<pid>/stat over the window, % of one core"}
        result.update(self.cost(leader, w0, w1, before, after))
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


class ZooKeeperGroup(Group):
    """ELECTION_BACKEND=zookeeper: 3 instances and a standalone ZooKeeper server of their own (its
    counters are then theirs alone)."""

    backend = "zookeeper"
    anchored_kills = False
    poll_interval = 0.1  # ready() asks the server (mntr)
    readiness = "the server does not hold one ephemeral znode per running instance (zk_ephemerals_count)"
    renewal_evidence = "renewal"

    def setup(self) -> None:
        from harness.services import ZooKeeperServer

        self.server = ZooKeeperServer(tick=self.bench.args.zk_tick).start()
        try:
            # ruok answers before the server serves ("not currently serving requests"): wait for mntr.
            deadline = time.monotonic() + 30
            while True:
                try:
                    first = mntr(self.server)
                    break
                except (OSError, RuntimeError) as exc:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"ZooKeeper on port {self.server.port} did not serve mntr within 30 s: "
                                           f"{exc}") from None
                    time.sleep(0.1)
            # What mntr costs itself: two readings with no client connected; the difference is what
            # one reading adds to a window's counters (the request it reads, the answer of the one before).
            second = mntr(self.server)
            self.mntr_cost = {key: int(second[key]) - int(first[key])
                              for key in ("zk_packets_received", "zk_packets_sent")}
        except BaseException:
            self.server.stop()
            raise

    def backend_env(self, slot: Slot) -> dict[str, str]:
        return {"ELECTION_BACKEND": "zookeeper", "ZOOKEEPER_HOSTS": self.server.hosts}

    def ready(self) -> bool:
        """Every instance is up and in line: the server holds exactly one ephemeral znode per running
        instance (a killed leader's znode is gone once its successor leads)."""
        if not all(slot.alive for slot in self.slots):
            return False
        return int(mntr(self.server)["zk_ephemerals_count"]) == len(self.slots)

    def renewal_marks(self, slot: Slot) -> list[float]:
        return []

    def cost_snapshot(self) -> dict[str, str]:
        return mntr(self.server)

    def cost(self, leader: Slot, w0: float, w1: float, before: Any, after: Any) -> dict[str, Any]:
        window = w1 - w0
        rates = {key: (int(after[key]) - int(before[key]) - self.mntr_cost[key]) / window
                 for key in ("zk_packets_received", "zk_packets_sent")}
        return {"counted": "packets at the server", "per_s": round(sum(rates.values()), 2),
                "how": "the server's mntr counters zk_packets_received + zk_packets_sent over the window, less "
                       f"what the two mntr readings add themselves ({self.mntr_cost})",
                "received_per_s": round(rates["zk_packets_received"], 2),
                "sent_per_s": round(rates["zk_packets_sent"], 2),
                "server_tick_s": self.server.tick,
                "alive_connections": int(after.get("zk_num_alive_connections", 0)),
                "ephemerals": int(after.get("zk_ephemerals_count", 0))}

    def server_pids(self) -> dict[str, int]:
        process = getattr(self.server, "process", None)
        return {"zookeeper server": process.pid} if process is not None else {}

    def close(self) -> None:
        super().close()
        self.server.stop()


class RaftGroup(Group):
    """ELECTION_BACKEND=raft: 3 fixed members. Member A reaches member B only through the proxy
    A->B (A's RAFT_PEERS gives B the proxy's address; A's own entry is where A listens), so every
    message crosses exactly one proxy, where a LineCounter sees it. A killed member is restarted with
    the same RAFT_ID, RAFT_DATA_DIR and port."""

    poll_interval = 0.1  # ready() copies the links' message log: not 50 times a second

    backend = "raft"
    anchored_kills = False
    readiness = "not every follower has acknowledged a heartbeat of the leader since it (re)started"
    renewal_evidence = "heartbeat"

    def setup(self) -> None:
        self.data_dir = self.bench.out / "raft" / self.name
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for slot in self.slots:
            slot.port = free_port()
        for slot in self.slots:
            for peer in self.slots:
                if peer is not slot:
                    assert peer.port is not None
                    counter = LineCounter()
                    slot.links[peer.name] = Link(TcpProxy(peer.port, watch=counter).start(), counter)

    def backend_env(self, slot: Slot) -> dict[str, str]:
        peers = ",".join(f"{s.name}=127.0.0.1:{s.port if s is slot else slot.links[s.name].proxy.port}"
                         for s in self.slots)
        return {"ELECTION_BACKEND": "raft", "RAFT_PEERS": peers, "RAFT_ID": slot.name,
                "RAFT_DATA_DIR": str(self.data_dir)}

    def _between(self, a: Slot, b: Slot, since: float) -> list[Any]:
        """Every message on the link between a and b (both directions' proxies) since ``since``."""
        return a.links[b.name].counter.since(since) + b.links[a.name].counter.since(since)

    def ready(self) -> bool:
        found = self.current_leader()
        if found is None or not all(slot.alive for slot in self.slots):
            return False
        leader = found[0]
        for slot in self.slots:
            if slot is leader:
                continue
            since = max(slot.life.started, leader.life.started)
            lines = self._between(leader, slot, since)
            heard = any(m.kind == "heartbeat" and m.src == leader.name and m.dst == slot.name for m in lines)
            acked = any(m.kind == "heartbeat_reply" and m.src == slot.name and m.dst == leader.name and m.ok
                        for m in lines)
            if not (heard and acked):
                return False
        return True

    def renewal_marks(self, slot: Slot) -> list[float]:
        return [m.at for peer in self.slots if peer is not slot
                for m in self._between(slot, peer, slot.life.started)
                if m.kind == "heartbeat" and m.src == slot.name]

    def cost(self, leader: Slot, w0: float, w1: float, before: Any, after: Any) -> dict[str, Any]:
        window = w1 - w0
        per_link, kinds, backwards = {}, Counter(), 0
        for slot in self.slots:
            for peer, link in slot.links.items():
                lines = link.counter.between(w0, w1)
                per_link[f"{slot.name}->{peer}"] = round(len(lines) / window, 2)
                kinds.update(m.kind or "not JSON" for m in lines)
                backwards += sum(1 for m in lines if not m.to_server)
        return {"counted": "peer messages", "per_s": round(sum(kinds.values()) / window, 2),
                "how": "newline-delimited JSON messages crossing the per-link TCP proxies (LineCounter), "
                       "both directions of every connection",
                "by_type_per_s": {k: round(v / window, 2) for k, v in sorted(kinds.items())},
                "per_link_per_s": per_link, "answered_on_the_callers_connection": backwards}


GROUPS: dict[str, type[Group]] = {"azure": Group, "zookeeper": ZooKeeperGroup, "raft": RaftGroup}


# -- the benchmark -------------------------------------------------------------------------------

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
        before = {name: cpu_ticks(pid) for name, pid in pids.items()}
        w0 = time.monotonic()
        time.sleep(self.args.window)
        w1 = time.monotonic()
        after = {name: cpu_ticks(pid) for name, pid in pids.items()}
        rss = [r for r in (rss_mib(pid) for pid in pids.values()) if r is not None]
        steady_leader = group.current_leader()
        if steady_leader is None or steady_leader[0] is not leader:
            self.say(f"  warning: the leader changed during the {n}-contender window")
        window = w1 - w0
        cpu = {name: 100 * (after[name] - before[name]) / CLK_TCK / window
               for name in pids if before[name] is not None and after[name] is not None}
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
            "call_latency_ms": {"p50": _ms(percentile(latencies, 50)), "p99": _ms(percentile(latencies, 99)),
                                "max": _ms(max(latencies) if latencies else None), "n": len(latencies)},
            "lease_action_latency_ms": {"p50": _ms(percentile(lease_latencies, 50)),
                                        "p99": _ms(percentile(lease_latencies, 99)), "n": len(lease_latencies)},
            "idle_worker_cpu_pct": {"mean": _r(statistics.mean(worker_cpu) if worker_cpu else None),
                                    "max": _r(max(worker_cpu) if worker_cpu else None)},
            "leader_cpu_pct": _r(cpu.get(leader.name)),
            "rss_mib": {"median": _r(statistics.median(rss) if rss else None, 1),
                        "max": _r(max(rss) if rss else None, 1), "total": _r(sum(rss), 0)},
            "leader_requests_per_min": round(60 * per_slot[leader.name] / window, 1),
            "worker_requests_per_min": _r(statistics.mean(workers_per_min) if workers_per_min else None, 1),
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


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _r(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


# -- estimates, targets, the table -------------------------------------------------------------

def design_window(design: Design, override: float | None = None) -> float:
    """A quiet window long enough for three renewals and three polls (unless told otherwise)."""
    return override if override is not None else max(30.0, 3 * design.renew, 3 * design.acquire)


def expected_failover(design: Design, mode: str) -> float:
    """Rough mean seconds from the signal to a new leader, for the runtime estimate."""
    poll = design.acquire * (1.6 if design.jitter == "client-go" else 1.0)
    if mode == "graceful" and design.release:
        return poll / 2 + 0.5
    return design.lease - design.renew / 2 + poll / 2


def estimate(args: argparse.Namespace) -> float:
    per_group = [args.trials * (expected_failover(DESIGNS[k], mode) + DESIGNS[k].renew / 2 + 3)
                 + (design_window(DESIGNS[k], args.design_window) if mode == "crash" else 0)
                 for k in args.designs for mode in ("crash", "graceful")]
    designs = (max(per_group) + 10) if per_group and args.trials else 0
    reuse_azure = "ours" in args.designs
    per_backend = [args.trials * (expected_failover(BACKEND_DESIGNS[b], mode) + BACKEND_DESIGNS[b].renew / 2 + 3)
                   + (design_window(BACKEND_DESIGNS[b], args.design_window) if mode == "crash" else 0)
                   + (3 if b == "zookeeper" else 0)
                   for b in args.backends if not (b == "azure" and reuse_azure) for mode in ("crash", "graceful")]
    backends = (max(per_backend) + 10) if per_backend and args.trials else 0
    ours = DESIGNS["ours"]
    contention = sum(0.6 * n + 10 + args.settle + args.window
                     + args.contention_trials * (expected_failover(ours, "crash") + ours.renew / 2 + 2 + 0.05 * n)
                     for n in args.contenders)
    return designs + backends + contention + 10


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    ours = DESIGNS["ours"]
    out = []
    row = results.get("designs", {}).get("ours")

    def add(name: str, value: float | None, limit: float, unit: str, why: str) -> None:
        if value is None:
            out.append({"target": name, "value": None, "limit": limit, "verdict": "NOT MEASURED", "reason": ""})
            return
        ok = value <= limit
        out.append({"target": name, "value": round(value, 3), "limit": round(limit, 3), "unit": unit,
                    "verdict": "PASS" if ok else "MISS",
                    "by": None if ok else round(value - limit, 3), "reason": "" if ok else why})

    crash = row["crash"]["median"] if row and "crash" in row else None
    add("crash failover median <= LEASE + ACQUIRE/2 + 1 s", crash, ours.lease + ours.acquire / 2 + 1, "s",
        "the lease runs LEASE_DURATION from the last renewal Azurite saw, then a worker's next poll; a "
        "longer miss means delayed polls (an overloaded machine) or a slow acquire+term write")
    graceful = row["graceful"]["median"] if row and "graceful" in row else None
    add("graceful failover median <= ACQUIRE/2 + 0.5 s", graceful, ours.acquire / 2 + 0.5, "s",
        "after SIGTERM the leader first stops its work (up to the 1.5 s grace) and then releases; the "
        "workers only notice at their next poll (every ACQUIRE_INTERVAL x U(0.9, 1.1)), and with few workers "
        "the wait for the first poll is close to ACQUIRE/2 on its own; the acquire then takes 3 storage "
        "round trips (read, acquire, term write) before the journal's start")
    contention = sorted(results.get("contention", []), key=lambda r: r["contenders"])
    measured = [r for r in contention if r["crash"]["median"] is not None]
    if len(measured) >= 2:
        low, high = measured[0], measured[-1]
        name = (f"crash failover at {high['contenders']} contenders within 10 % of that at "
                f"{low['contenders']}")
        add(name, high["crash"]["median"], 1.1 * low["crash"]["median"], "s",
            "more contenders mean more storage calls per second: a slower Azurite and a busier machine "
            "delay the acquire; start-up of many Python processes on 2 shared cores competes for CPU")
    else:
        out.append({"target": "crash failover at many contenders within 10 % of few", "value": None,
                    "verdict": "NOT MEASURED", "reason": "needs crash trials at two or more contender counts"})
    cpus = [r["idle_worker_cpu_pct"]["mean"] for r in contention if r["idle_worker_cpu_pct"]["mean"] is not None]
    worst = max(cpus) if cpus else None
    add("idle worker CPU < 1 % of one core (worst mean over the contender counts)", worst, 1.0, "%",
        "a poll every ACQUIRE_INTERVAL (an HTTP call through the Azure SDK's pipeline) plus a MySQL read and "
        "a printed table every READ_INTERVAL; a busy machine makes each cost more")
    return out


def backend_targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each backend's failover against what it promises (harness/clusters.py gives the same
    bounds to the conformance suite): azure by the medians of the targets above; ZooKeeper and Raft
    by their worst trial, since the issue bounds every failover ("within")."""
    out = []
    columns = results.get("backends", {})
    tick = (results.get("args") or {}).get("zk_tick", ZOOKEEPER_TICK)

    def add(backend: str, mode: str, stat: str, limit: float, why: str) -> None:
        column = columns.get(backend)
        value = column[mode][stat] if column else None
        name = f"{backend}: {'crash' if mode == 'crash' else 'graceful'} failover {stat} <= {limit:g} s ({why})"
        if value is None:
            out.append({"backend": backend, "target": name, "value": None, "limit": limit,
                        "verdict": "NOT MEASURED", "reason": ""})
            return
        ok = value <= limit
        out.append({"backend": backend, "target": name, "value": value, "limit": limit, "unit": "s",
                    "verdict": "PASS" if ok else "MISS", "by": None if ok else round(value - limit, 3)})

    if "azure" in columns:
        ours = DESIGNS["ours"]
        add("azure", "crash", "median", ours.lease + ours.acquire / 2 + 1, "LEASE + ACQUIRE/2 + 1 s")
        add("azure", "graceful", "median", ours.acquire / 2 + 0.5, "ACQUIRE/2 + 0.5 s")
    if "zookeeper" in columns:
        session = BACKEND_DESIGNS["zookeeper"].lease
        add("zookeeper", "crash", "max", session + tick + 1,
            f"session {session:g} s + one {tick:g} s tick, by which the server expires it, + 1 s")
        add("zookeeper", "graceful", "max", 1.0, "the deleted znode's watch fires: within a second")
    if "raft" in columns:
        _, high = RAFT_TIMEOUT
        add("raft", "crash", "max", 2 * high, "2 x the maximum election timeout")
        add("raft", "graceful", "max", 1.0, "the leader hands over (TimeoutNow): within a second")
    return out


def steady_cost(results: dict[str, Any]) -> dict[str, Any]:
    """Storage requests per minute and per 30-day month, from the quietest measurement of ours."""
    contention = sorted(results.get("contention", []), key=lambda r: r["contenders"])
    if contention:
        source = contention[0]
        leader, worker = source["leader_requests_per_min"], source["worker_requests_per_min"]
        where = f"{source['window_s']:g} s quiet window with {source['contenders']} instances"
    else:
        rates = results.get("designs", {}).get("ours", {}).get("steady_requests") or {}
        leader, worker = rates.get("leader_per_min"), rates.get("worker_per_min")
        where = f"a {rates.get('window_s')} s quiet window with 3 instances"
    month = 60 * 24 * 30
    return {"source": where, "leader_per_min": leader, "worker_per_min": worker,
            "leader_per_month": round(leader * month) if leader else None,
            "worker_per_month": round(worker * month) if worker else None,
            "expected": {"leader_per_min": 60 / 5 * 2, "worker_per_min": 60 / 2,
                         "why": "leader: a renewal and a metadata rewrite every RENEW_INTERVAL (5 s); worker: one "
                                "Get Blob Properties every ACQUIRE_INTERVAL (2 s) while the lease is held"}}


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
        row("at rest: leader CPU %", rest("leader_cpu_pct")),
        row("at rest: worker CPU % (mean)", rest("worker_cpu_pct")),
        row("at rest: server CPU %", rest("server_cpu_pct")),
        row("at rest: window s", rest("window_s", 1)),
    ]
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
        how = r.get("how", "not measured")
        notes.append(f"  {b}: {how}{detail}; source: {c['source']}")
    return text + "\n" + "\n".join(notes)


def report(results: dict[str, Any]) -> str:
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


# -- main ----------------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="make bench BENCH_ARGS=...", description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=5, help="crash and graceful trials per design and backend (5)")
    parser.add_argument("--designs", default="seed,microsoft,client-go,ours",
                        help=f"comma-separated, from {', '.join(DESIGNS)} ('' for none)")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help=f"election backends, one column each: comma-separated, from {', '.join(BACKENDS)} "
                             "('' for none); azure reuses the 'ours' design's trials when that runs")
    parser.add_argument("--zk-tick", type=float, default=ZOOKEEPER_TICK,
                        help=f"tickTime of the benchmark's ZooKeeper servers, s ({ZOOKEEPER_TICK:g}: the packaged "
                             "zoo.cfg's); a session expires up to one tick after its timeout")
    parser.add_argument("--contenders", default="3,10,50,100", help="contender counts for ours ('' for none)")
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
    args.backends = list(dict.fromkeys(b.strip() for b in args.backends.split(",") if b.strip()))
    unknown = [b for b in args.backends if b not in BACKENDS]
    if unknown:
        parser.error(f"unknown backend(s) {', '.join(unknown)}; known: {', '.join(BACKENDS)}")
    if not args.report:
        missing = {b: why for b in args.backends if (why := backend_unavailable(b))}
        if missing:
            parser.error("; ".join(f"backend {b} cannot run here: {why}" for b, why in missing.items())
                         + f" (leave it out: --backends {','.join(b for b in args.backends if b not in missing)!r})")
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
        from bench.plot import timeline

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
            for g in bench.groups if not g.name.startswith("cont") or len(g.slots) <= 10]
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
