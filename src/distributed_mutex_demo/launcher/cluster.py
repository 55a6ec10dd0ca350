"""The demo's instances of ``src/DistributedMutex/test.py``: started with the election's settings,
their output pumped to the panel, the leader found in their leadership journal, and the failovers
the demo causes (a kill or a graceful stop of the leader, then a fresh instance in its place) timed
from the signal to the next leader's first act."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO

from distributed_mutex_demo.launcher.panel import (
    BOLD,
    COLOURS,
    KEYS_HELP,
    PANEL_LOG_LINES,
    RESET,
    is_log_line,
    keys,
    plain,
    render_panel,
    render_summary,
    strip_prefix,
)
from distributed_mutex_demo.launcher.services import ROOT, Services, die_with_parent

PROGRAM = ROOT / "src" / "DistributedMutex" / "test.py"
# What a kill and a graceful stop mean for each backend, as the demo says it.
KILL_MEANS = {"azure": "its lease must run out", "zookeeper": "its session must expire",
              "raft": "the others must miss its heartbeats"}
STOP_MEANS = {"azure": "it releases its lease", "zookeeper": "it deletes its znode",
              "raft": "it hands leadership over"}


@dataclass
class Disruption:
    kind: str  # "kill" or "graceful stop"
    victim: str
    victim_pid: int  # a Raft member comes back under its own name: the process tells them apart
    at: float  # time.monotonic()
    successor: str | None = None
    took: float | None = None


@dataclass
class Node:
    name: str
    colour: str
    process: subprocess.Popen[str]
    started: float = field(default_factory=time.monotonic)
    last_write: str = "-"

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


class Demo:
    def __init__(self, *, seconds: float, instances: int, failover_every: float, out: TextIO,
                 backend: str = "azure") -> None:
        self.backend = backend
        self.seconds = seconds
        self.instances = instances
        self.failover_every = failover_every
        self.out = out
        self.live = out.isatty()
        self.workdir = Path(tempfile.mkdtemp(prefix="dm-demo-"))
        self.journal = self.workdir / "leadership.jsonl"
        self.services = Services(backend, self.workdir, f"demo-{uuid.uuid4().hex[:12]}", instances)
        self.nodes: list[Node] = []
        self.disruptions: list[Disruption] = []
        self.log: deque[str] = deque(maxlen=PANEL_LOG_LINES)
        self.lock = threading.RLock()
        self.next_number = 1
        self.next_kind = "graceful stop"  # the first one is quick to watch; then they alternate
        self.stopping = threading.Event()
        self.replacements: queue.Queue[str] = queue.Queue()
        self.running_at_end = 0

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> int:
        started = time.monotonic()
        where = self.services.start()
        for _ in range(self.instances):
            self.add_node()
        self.say(f"{BOLD}demo{RESET}: {self.instances} instances, {where}; {KEYS_HELP}")
        raft = bool(self.services.raft_peers)
        next_failover = started + self.failover_every if self.failover_every else float("inf")
        with keys(self.live) as pressed:
            while not self.stopping.is_set():
                now = time.monotonic()
                if self.seconds and now - started >= self.seconds:
                    break
                self.track()
                pending = any(d.took is None for d in self.disruptions)
                if pending and self.failover_every:
                    # The next automatic failover comes a while after this one has played out.
                    next_failover = now + self.failover_every
                elif now >= next_failover and self.leader() is not None:
                    self.disrupt(self.next_kind)
                    self.next_kind = "kill" if self.next_kind == "graceful stop" else "graceful stop"
                while not self.replacements.empty():
                    stopped = self.replacements.get_nowait()
                    self.add_node(stopped if raft else None)
                key = pressed.read(timeout=0.25)
                if key == "q":
                    break
                if key in ("k", "s"):
                    self.disrupt("kill" if key == "k" else "graceful stop")
                elif key == "a" and raft:
                    self.say(f"{BOLD}demo{RESET}: a Raft cluster is the members RAFT_PEERS lists; "
                             "not adding an instance")
                elif key == "a":
                    self.add_node()
                self.draw(now - started)
        self.track()
        self.running_at_end = sum(node.alive for node in self.snapshot())
        self.stopping.set()
        return 0

    def snapshot(self) -> list[Node]:
        with self.lock:
            return list(self.nodes)

    def stop(self) -> None:
        self.stopping.set()

    def close(self) -> None:
        """Stop every instance (gracefully, then for sure) and the election's service; nothing is left behind."""
        self.stopping.set()  # add_node refuses from now on
        for node in self.snapshot():
            if node.alive:
                node.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for node in self.snapshot():
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.process.wait(max(0.1, deadline - time.monotonic()))
            if node.alive:
                node.process.kill()
                node.process.wait()
        self.services.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- instances ---------------------------------------------------------------------------

    def add_node(self, name: str | None = None) -> Node | None:
        """A new instance; ``name``: a Raft member coming back under its own name (and colour)."""
        with self.lock:
            if self.stopping.is_set():
                return None
            number = int(name.rsplit("-", 1)[1]) if name else self.next_number
            if name is None:
                name = f"node-{self.next_number}"
                self.next_number += 1
            colour = COLOURS[(number - 1) % len(COLOURS)]
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("ZOOKEEPER_", "RAFT_"))},
               **self.services.backend_env(name),
               "INSTANCE_ID": name,
               "LEADERSHIP_JOURNAL": str(self.journal),
               "PYTHONUNBUFFERED": "1"}
        # FETCH_INTERVAL keeps its default (60 s): 5 cities more often than every 43 s would exceed
        # Open-Meteo's free use (10,000 calls a day) and OpenWeatherMap's free tier is no looser.
        env.setdefault("READ_INTERVAL", "5")
        if not env.get("MYSQL_HOST"):
            env.setdefault("SQLITE_PATH", str(self.workdir / "weather.sqlite3"))  # shared by the instances
        for name_ in ("AZURE_STORAGE_CONTAINER_SAS_URL", "AZURE_STORAGE_ACCOUNT_URL"):
            env.pop(name_, None)  # the demo's own Azurite, whatever the shell says
        process = subprocess.Popen([sys.executable, str(PROGRAM)], env=env, cwd=self.workdir, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1,
                                   preexec_fn=die_with_parent)
        node = Node(name, colour, process)
        with self.lock:
            self.nodes.append(node)
            if self.stopping.is_set():  # close() began meanwhile: it may not have seen this one
                process.kill()
        threading.Thread(target=self._pump, args=(node,), daemon=True).start()
        return node

    def _pump(self, node: Node) -> None:
        assert node.process.stdout is not None
        for line in node.process.stdout:
            line = line.rstrip("\n")
            if not line.strip() or not is_log_line(line):
                continue  # the workers' tables: the panel shows the newest write instead
            match = re.search(r"stored (\d+) readings", line)
            if match:
                node.last_write = f"{datetime.now().strftime('%H:%M:%S')} ({match[1]} readings)"
            self.say(f"{node.colour}[{node.name}]{RESET} {strip_prefix(line)}")

    def disrupt(self, kind: str) -> None:
        leader = self.leader()
        if leader is None:
            self.say(f"{BOLD}demo{RESET}: no leader right now; nothing to {kind.split()[-1]}")
            return
        at = time.monotonic()
        leader.process.send_signal(signal.SIGKILL if kind == "kill" else signal.SIGTERM)
        self.disruptions.append(Disruption(kind, leader.name, leader.process.pid, at))
        means = KILL_MEANS if kind == "kill" else STOP_MEANS
        self.say(f"{BOLD}demo{RESET}: {kind} of the leader {leader.name} ({means[self.backend]})")
        threading.Thread(target=self._replace, args=(leader,), daemon=True).start()

    def _replace(self, node: Node) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            node.process.wait(10)
        # Started by the main loop, not here: PR_SET_PDEATHSIG fires when the *thread* that
        # started a child ends, so a child of this short-lived thread would be killed at once.
        self.replacements.put(node.name)

    # -- what is going on --------------------------------------------------------------------

    def intervals(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        with contextlib.suppress(FileNotFoundError):
            for line in self.journal.read_text(encoding="utf-8").splitlines(keepends=True):
                if line.endswith("\n"):
                    records.append(json.loads(line))
        return records

    def leader_record(self) -> dict[str, Any] | None:
        open_: dict[int, dict[str, Any]] = {}  # by pid: a Raft member that came back shares its name
        for record in self.intervals():
            if record["event"] == "start":
                open_[record["pid"]] = record
            else:
                open_.pop(record["pid"], None)
        alive = {n.process.pid for n in self.snapshot() if n.alive}
        current = [r for pid, r in open_.items() if pid in alive]
        return max(current, key=lambda r: r["mono"]) if current else None

    def leader(self) -> Node | None:
        record = self.leader_record()
        # By pid, not name: a Raft member that came back under its own name left its dead process
        # in the list, and signalling that one would leave the real leader running.
        return next((n for n in self.snapshot() if record and n.process.pid == record["pid"]), None)

    def track(self) -> None:
        """Match each disruption with the first leadership another instance started after it."""
        starts = [r for r in self.intervals() if r["event"] == "start"]
        for disruption in self.disruptions:
            if disruption.took is not None:
                continue
            after = [r for r in starts if r["mono"] >= disruption.at and r["pid"] != disruption.victim_pid]
            if after:
                first = min(after, key=lambda r: r["mono"])
                disruption.successor, disruption.took = first["instance"], first["mono"] - disruption.at
                self.say(f"{BOLD}demo{RESET}: failover after the {disruption.kind} of {disruption.victim}: "
                         f"{first['instance']} leads (term {first['term']}) after {disruption.took:.1f} s")

    # -- output ------------------------------------------------------------------------------

    def say(self, line: str) -> None:
        with self.lock:
            self.log.append(line)
            if not self.live:
                self.out.write(plain(line) + "\n")
                self.out.flush()

    def draw(self, elapsed: float) -> None:
        if not self.live:
            return
        record, left = self.leader_record(), self.services.lease_left()  # a storage call: not under the lock
        with self.lock:  # the pump threads append to the log meanwhile
            self.out.write(render_panel(elapsed, record, left, self.snapshot(), self.disruptions, self.log,
                                        self.services.note))
            self.out.flush()

    def summary(self) -> str:
        return render_summary(self.disruptions, self.running_at_end)
