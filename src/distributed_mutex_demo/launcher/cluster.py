"""The demo's instances of ``src/DistributedMutex/test.py``: started with the election's settings,
their output read into the demo's state (state.py), the leader found in their leadership journal,
and what the demo does to them (kill, graceful stop, pause, cut off, add), each timed from the act
to the cluster's reaction. Actions from the keys, the web page and the schedule all go through
one queue that the main loop serves: a child must be started by the main thread, because
PR_SET_PDEATHSIG fires when the *thread* that started it ends."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from distributed_mutex_demo.launcher import readers
from distributed_mutex_demo.launcher.faults import pause
from distributed_mutex_demo.launcher.panel import KEYS_HELP, Panel, keys
from distributed_mutex_demo.launcher.services import ROOT, Services, die_with_parent, free_port
from distributed_mutex_demo.launcher.state import Action, DemoState, Instance, Leadership

PROGRAM = ROOT / "src" / "DistributedMutex" / "test.py"
# What each disruption means for each backend, as the demo says it.
MEANS = {
    "kill": {"azure": "its lease must run out", "zookeeper": "its session must expire",
             "raft": "the others must miss its heartbeats", "postgres": "its row's lease must run out",
             "redis": "its key must expire"},
    "graceful stop": {"azure": "it releases its lease", "zookeeper": "it deletes its znode",
                      "raft": "it hands leadership over", "postgres": "it releases its row and NOTIFYs",
                      "redis": "it deletes its key"},
    "pause": {"azure": "frozen: its lease runs out", "zookeeper": "frozen: its session expires",
              "raft": "frozen: its heartbeats stop", "postgres": "frozen: its row's lease runs out",
              "redis": "frozen: its key expires"},
    "cut off": {"azure": "from Azurite", "zookeeper": "from ZooKeeper", "raft": "from its peers",
                "postgres": "from PostgreSQL", "redis": "from Redis"},
}
ACTIONS = {"kill-leader": "kill", "stop-leader": "graceful stop", "pause-leader": "pause",
           "cut-off": "cut off", "add-instance": "add"}
# How long a pause or a cut lasts unless the viewer chooses: past the lease, so that another leads.
HOLD = {"azure": 20.0, "zookeeper": 10.0, "raft": 5.0, "postgres": 10.0, "redis": 10.0}


@dataclass
class Schedule:
    """One automatic disruption every ``every`` seconds after the last one, whatever its kind or
    origin; when one is due while no one leads (a failover still under way), it waits for a leader."""

    every: float
    next_at: float

    def due(self, now: float) -> bool:
        return self.every > 0 and now >= self.next_at

    def disrupted(self, at: float) -> None:
        self.next_at = at + self.every


class Demo:
    def __init__(self, *, seconds: float, instances: int, failover_every: float, out: TextIO,
                 backend: str = "azure") -> None:
        self.seconds = seconds
        self.instances = instances
        self.out = out
        self.live = out.isatty()
        self.workdir = Path(tempfile.mkdtemp(prefix="dm-demo-"))
        self.journal = self.workdir / "leadership.jsonl"
        self.services = Services(backend, self.workdir, f"demo-{uuid.uuid4().hex[:12]}", instances)
        self.state = DemoState(backend, failover_every)
        self.processes: dict[int, subprocess.Popen[str]] = {}
        self.ports: dict[int, int] = {}  # pid -> its /healthz port
        self.next_number = 1
        self.slot_uses: dict[str, int] = {}  # Raft: how many instances each member slot has run
        self.next_kind = "graceful stop"  # the first one is quick to watch; then they alternate
        self.stopping = threading.Event()
        self.requests: queue.Queue[tuple[str, dict[str, Any], str, Future[str]]] = queue.Queue()
        self.busy = threading.Event()  # a pause or a cut is being held
        self.running_at_end = 0
        self.sqlite = None if os.environ.get("MYSQL_HOST") else self.workdir / "weather.sqlite3"
        self.fetch_interval = float(os.environ.get("FETCH_INTERVAL", "").strip() or 60)
        if backend == "raft":
            self.state.disabled["add-instance"] = ("a Raft cluster is the members RAFT_PEERS lists; adding one "
                                                   "needs a membership change, which the Raft backend does not do")

    @property
    def backend(self) -> str:
        return self.state.backend

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> int:
        self.state.where = self.services.start()
        self.state.note = self.services.note
        for _ in range(self.instances):
            self.add_node()
        self.say(f"demo: {self.instances} instances, {self.state.where}; {KEYS_HELP}")
        threading.Thread(target=self._watch_health, daemon=True).start()
        started = time.monotonic()
        schedule = Schedule(self.state.failover_every, started + self.state.failover_every)
        with keys(self.live) as pressed, Panel(self.out, self.live) as panel:
            while not self.stopping.is_set():
                now = time.monotonic()
                if self.seconds and now - started >= self.seconds:
                    break
                self.track()
                if schedule.due(now) and not self.busy.is_set() and self.state.leader() is not None:
                    self.act(self.next_kind, {}, "schedule")
                    self.next_kind = "kill" if self.next_kind == "graceful stop" else "graceful stop"
                while not self.requests.empty():
                    kind, args, origin, answer = self.requests.get_nowait()
                    if kind == "replace":  # a stopped leader's replacement (Raft: in its member slot)
                        self.add_node(args["slot"] if self.backend == "raft" else None)
                    else:
                        answer.set_result(self.act(kind, args, origin))
                with self.state.lock:  # a disruption by key or button moves the schedule on too
                    disruptions = [a.at for a in self.state.actions if a.kind != "add"]
                if disruptions:
                    schedule.disrupted(self.state.started + disruptions[-1])
                key = pressed.read(timeout=0.25)
                if key == "q":
                    break
                if key in ("k", "s", "a"):
                    self.act({"k": "kill", "s": "graceful stop", "a": "add"}[key], {}, "key")
                panel.draw(self.state.snapshot())
        self.track()
        with self.state.lock:
            self.running_at_end = sum(i.exit_code is None for i in self.state.instances)
        self.stopping.set()
        return 0

    def request(self, action: str, args: dict[str, Any], origin: str = "web") -> Future[str]:
        """From another thread (the web page): done by the main loop; the future says what happened."""
        answer: Future[str] = Future()
        if action not in ACTIONS:
            answer.set_result(f"unknown action {action!r}")
        elif action in self.state.disabled:
            answer.set_result(self.state.disabled[action])
        else:
            self.requests.put((ACTIONS[action], args, origin, answer))
        return answer

    def stop(self) -> None:
        self.stopping.set()

    def close(self) -> None:
        """Stop every instance (gracefully, then for sure) and the election's service; nothing is left behind."""
        self.stopping.set()  # add_node refuses from now on
        processes = list(self.processes.values())
        for process in processes:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    process.send_signal(signal.SIGCONT)  # a paused one must be able to stop
                    process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 5
        for process in processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(max(0.1, deadline - time.monotonic()))
            if process.poll() is None:
                process.kill()
                process.wait()
        self.services.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # -- actions -----------------------------------------------------------------------------

    def act(self, kind: str, args: dict[str, Any], origin: str) -> str:
        """Do ``kind`` (a cause of failover, or "add") now; returns the sentence the demo says."""
        if kind == "add":
            if "add-instance" in self.state.disabled:
                return self.say(f"demo: not adding an instance: {self.state.disabled['add-instance']}")
            node = self.add_node(origin=origin)
            return self.say(f"demo: added {node.name}, a new instance; it joins as a worker" if node
                            else "demo: ending: not adding an instance")
        leader = self.state.leader()
        victim = self.state.instance(leader.pid) if leader else None
        if leader is None or victim is None:
            return self.say(f"demo: no leader right now; nothing to {kind.split()[-1]}")
        if self.busy.is_set() and kind in ("pause", "cut off"):
            return self.say("demo: a pause or a cut is still being held; try again when it is over")
        hold = float(args.get("seconds") or HOLD[self.backend])
        action = Action(kind, victim.name, victim.pid, self.state.now(), origin)
        with self.state.lock:
            self.state.actions.append(action)
            self.state.changed()
        process = self.processes[victim.pid]
        if kind in ("kill", "graceful stop"):
            process.send_signal(signal.SIGKILL if kind == "kill" else signal.SIGTERM)
            threading.Thread(target=self._replace, args=(victim,), daemon=True).start()
            return self.say(f"demo: {kind} of the leader {victim.name} ({MEANS[kind][self.backend]})")
        self.busy.set()
        threading.Thread(target=self._hold, args=(action, victim, hold), daemon=True).start()
        if kind == "pause":
            return self.say(f"demo: pausing the leader {victim.name} for {hold:g} s "
                            f"({MEANS[kind][self.backend]}), then resuming it")
        return self.say(f"demo: cutting the leader {victim.name} off {MEANS[kind][self.backend]} for {hold:g} s")

    def _hold(self, action: Action, victim: Instance, hold: float) -> None:
        def frozen() -> None:  # the failover is timed from the freeze, not from the button
            with self.state.lock:
                action.at = self.state.now()
                self.state.changed()

        try:
            if action.kind == "pause":
                caught = pause(victim.pid, hold, store=self.sqlite, next_write=lambda: self._next_write(victim),
                               stopping=self.stopping.is_set, frozen=frozen)
                self._mark(victim, paused=False)
                self.say(f"demo: resumed {victim.name}" + (" while its write waited for the database: the store "
                                                           "must refuse it" if caught else ""))
            else:
                self._mark(victim, cut_off=True)
                self.services.cuts.cut(victim.slot, hold, self.stopping.is_set)
                self._mark(victim, cut_off=False)
                self.say(f"demo: reconnected {victim.name}")
        finally:
            self.busy.clear()

    def _next_write(self, victim: Instance) -> float | None:
        """When the paused leader's next write is due (time.monotonic()), from its last one; marks it paused."""
        last = readers.last_write_at(victim)
        self._mark(victim, paused=True)
        if last is None:
            return None
        due = last + self.fetch_interval
        while due < time.monotonic() + 0.6:
            due += self.fetch_interval
        return due

    def _mark(self, victim: Instance, **flags: bool) -> None:
        with self.state.lock:
            for name, value in flags.items():
                setattr(victim, name, value)
            self.state.changed()

    def _replace(self, victim: Instance) -> None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.processes[victim.pid].wait(10)
        # Started by the main loop (see the module's docstring).
        self.requests.put(("replace", {"slot": victim.slot}, "demo", Future()))

    # -- instances ---------------------------------------------------------------------------

    def add_node(self, slot: str | None = None, origin: str = "") -> Instance | None:
        """A new instance under a name never used before; ``slot``: the Raft member it replaces."""
        with self.state.lock:
            if self.stopping.is_set():
                return None
            if self.backend == "raft":
                slot = slot or f"node-{self.next_number}"
                uses = self.slot_uses.get(slot, 0)
                self.slot_uses[slot] = uses + 1
                # node-1, then node-1b, node-1c...: its own name, the member's RAFT_ID and state.
                name = slot + ("" if uses == 0 else chr(ord("a") + uses))
                if uses == 0:
                    self.next_number += 1
            else:
                name = slot = f"node-{self.next_number}"
                self.next_number += 1
            colour = len(self.state.instances)
        port = free_port()
        env = {**{k: v for k, v in os.environ.items() if not k.startswith(("ZOOKEEPER_", "RAFT_", "METRICS_"))},
               **self.services.backend_env(slot),
               "INSTANCE_ID": name,
               "LEADERSHIP_JOURNAL": str(self.journal),
               "METRICS_PORT": str(port), "METRICS_HOST": "127.0.0.1",  # its /healthz: role, lease
               "PYTHONUNBUFFERED": "1"}
        # FETCH_INTERVAL keeps its default (60 s): 5 cities more often than every 43 s would exceed
        # Open-Meteo's free use (10,000 calls a day) and OpenWeatherMap's free tier is no looser.
        env.setdefault("READ_INTERVAL", "5")
        if self.sqlite is not None:
            env.setdefault("SQLITE_PATH", str(self.sqlite))  # shared by the instances
        for name_ in ("AZURE_STORAGE_CONTAINER_SAS_URL", "AZURE_STORAGE_ACCOUNT_URL"):
            env.pop(name_, None)  # the demo's own Azurite, whatever the shell says
        process = subprocess.Popen([sys.executable, str(PROGRAM)], env=env, cwd=self.workdir, text=True,
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, bufsize=1,
                                   preexec_fn=die_with_parent)
        instance = Instance(name, slot, colour, process.pid, self.state.now())
        with self.state.lock:
            self.processes[process.pid] = process
            self.ports[process.pid] = port
            self.state.instances.append(instance)
            if origin:
                self.state.actions.append(Action("add", name, process.pid, instance.started, origin))
            self.state.changed()
            if self.stopping.is_set():  # close() began meanwhile: it may not have seen this one
                process.kill()
        threading.Thread(target=self._pump, args=(instance, process), daemon=True).start()
        return instance

    def _pump(self, instance: Instance, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        reader = readers.OutputReader(self.state, instance)
        for line in process.stdout:
            said = reader.line(line.rstrip("\n"))
            if said:
                self.say(said, instance)
        code = process.wait()
        with self.state.lock:
            instance.exit_code = code
            self.state.changed()

    def _watch_health(self) -> None:
        """Each leader's lease countdown, from its /healthz (seconds since its last renewal)."""
        duration = self.services.lease_duration()
        while not self.stopping.wait(0.5):
            for instance in list(self.state.instances):
                left = None
                if instance.exit_code is None and not instance.paused:
                    with contextlib.suppress(OSError, ValueError):
                        url = f"http://127.0.0.1:{self.ports[instance.pid]}/healthz"
                        try:
                            body = urllib.request.urlopen(url, timeout=0.4).read()
                        except urllib.error.HTTPError as unhealthy:  # 503 still carries the body
                            body = unhealthy.read()
                        since = json.loads(body).get("seconds_since_renewal")
                        left = None if since is None else max(0.0, duration - since)
                with self.state.lock:
                    if instance.lease_left != left:
                        instance.lease_left = left
                        self.state.changed()

    # -- what is going on --------------------------------------------------------------------

    def track(self) -> None:
        """The leaderships from the journal; each disruption matched with the first leadership
        another instance started after it."""
        records = readers.read_journal(self.journal)
        base = self.state.started
        spans: dict[int, Leadership] = {}
        for r in records:
            if r["event"] == "start":
                # Not rounded: a Redis or Raft hand-over takes a few milliseconds, and a start rounded
                # down to before the disruption it followed was matched with the next one instead.
                spans[len(spans)] = Leadership(r["instance"], r["pid"], r["term"], r["mono"] - base)
            else:
                for span in spans.values():
                    if span.pid == r["pid"] and span.term == r["term"] and span.end is None:
                        span.end, span.reason = r["mono"] - base, r.get("reason", "")
        said = []
        with self.state.lock:
            leaderships = sorted(spans.values(), key=lambda s: s.start)
            if leaderships != self.state.leaderships:
                self.state.leaderships = leaderships
                self.state.changed()
            for action in self.state.actions:
                if action.took is not None or action.kind == "add":
                    continue
                after = [s for s in leaderships if s.start >= action.at and s.pid != action.target_pid]
                if after:
                    first = after[0]
                    action.successor, action.term = first.instance, first.term
                    action.took = round(max(0.0, first.start - action.at), 2)
                    self.state.changed()
                    said.append(f"demo: failover after the {action.kind} of {action.target}: {first.instance} "
                                f"leads (term {first.term}) after {action.took:.1f} s")
        for line in said:
            self.say(line)

    # -- output ------------------------------------------------------------------------------

    def say(self, line: str, instance: Instance | None = None) -> str:
        """A line for the log (the panel's, the web page's; stdout when not in a terminal)."""
        text = f"[{instance.name}] {line}" if instance else line
        with self.state.lock:
            self.state.log.append(text)
            self.state.changed()
        if not self.live:
            self.out.write(text + "\n")
            self.out.flush()
        return line

    def summary(self) -> str:
        with self.state.lock:
            return readers.render_summary(self.state.actions, self.running_at_end)

