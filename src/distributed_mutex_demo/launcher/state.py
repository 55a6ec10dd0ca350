"""The demo's one source of truth: every instance, who leads, each failover and its cause, every
write the store refused as stale, and what the viewer (or the schedule) did and how long the
cluster took to react. The launcher writes it; the terminal panel and the web page read snapshots
of it (``snapshot()``, plain JSON-able data), so the two views can never disagree.

Times are seconds since the demo started (``time.monotonic()`` based, the clock the instances'
leadership journal uses too)."""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from typing import Any

LOG_LINES = 14
# What each cause means, as the timeline says it.
CAUSES = ("kill", "graceful stop", "pause", "cut off")


@dataclass
class Instance:
    name: str  # unique for the whole run: a replacement never reuses a name
    slot: str  # the Raft member it runs as (RAFT_ID); its own name on the other backends
    colour: int
    pid: int
    started: float
    exit_code: int | None = None
    last_write: str = "-"
    last_read: str = "-"
    paused: bool = False
    cut_off: bool = False
    lease_left: float | None = None  # while it leads: until its lease must have been renewed


@dataclass
class Action:
    """A disruption or an addition, by the viewer or by the schedule, and the cluster's reaction."""

    kind: str  # a CAUSE, or "add"
    target: str
    target_pid: int
    at: float
    origin: str  # "schedule", "key" or "web"
    successor: str | None = None
    term: int | None = None
    took: float | None = None  # seconds until the cluster reacted (a new leader; a new instance's first step)


@dataclass
class Leadership:
    instance: str
    pid: int
    term: int
    start: float
    end: float | None = None
    reason: str = ""


@dataclass
class Refusal:
    instance: str
    term: int
    stored: int | None
    at: float
    text: str


@dataclass
class DemoState:
    backend: str
    failover_every: float
    started: float = field(default_factory=time.monotonic)
    instances: list[Instance] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    leaderships: list[Leadership] = field(default_factory=list)
    refusals: list[Refusal] = field(default_factory=list)
    log: deque[str] = field(default_factory=lambda: deque(maxlen=LOG_LINES))
    disabled: dict[str, str] = field(default_factory=dict)  # action -> why this backend cannot do it
    where: str = ""
    note: str = ""
    url: str = ""  # the web page's, when it is served
    version: int = 0
    lock: threading.Condition = field(default_factory=threading.Condition)

    def now(self) -> float:
        return time.monotonic() - self.started

    def changed(self) -> None:
        """Call with the lock held after any change: wakes the web page's streams."""
        self.version += 1
        self.lock.notify_all()

    def wait_for_change(self, version: int, timeout: float) -> int:
        with self.lock:
            self.lock.wait_for(lambda: self.version != version, timeout)
            return self.version

    def leader(self) -> Leadership | None:
        """The newest open leadership of a live instance (a paused one that has not noticed yet
        still has its leadership open, but a newer one has begun)."""
        live = {i.pid for i in self.instances if i.exit_code is None}
        open_ = [s for s in self.leaderships if s.end is None and s.pid in live]
        return max(open_, key=lambda s: s.start) if open_ else None

    def instance(self, pid: int) -> Instance | None:
        return next((i for i in self.instances if i.pid == pid), None)

    def role(self, instance: Instance, leader: Leadership | None) -> str:
        if instance.exit_code is not None:
            return "stopped"
        return "leader" if leader is not None and leader.pid == instance.pid else "worker"

    def snapshot(self) -> dict[str, Any]:
        """Everything both views show, as plain data (the web page receives it as JSON)."""
        with self.lock:
            leader = self.leader()
            instances = []
            for i in self.instances:
                role = self.role(i, leader)
                instances.append({**asdict(i), "role": role,
                                  "term": leader.term if role == "leader" and leader else None,
                                  "lease_left": i.lease_left if role == "leader" else None})
            return {
                "backend": self.backend, "elapsed": round(self.now(), 1), "failover_every": self.failover_every,
                "where": self.where, "note": self.note, "url": self.url, "version": self.version,
                "leader": None if leader is None else {"name": leader.instance, "term": leader.term,
                                                       "since": round(leader.start, 1)},
                "instances": instances,
                "leaderships": [asdict(s) for s in self.leaderships],
                "actions": [asdict(a) for a in self.actions],
                "refusals": [asdict(r) for r in self.refusals],
                "log": list(self.log),
                "disabled": dict(self.disabled),
            }
