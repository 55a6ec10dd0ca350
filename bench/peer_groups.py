"""Groups of the real-peer comparison: 3 processes of one contender (ours, the library alone, or a
peer's own library from PyPI: kazoo's Election recipe, PySyncObj) on one backend, started from the
scripts in bench/peers/. They reuse what bench/group.py does for our instances (the trial: signal ->
the next leader's journal ``start`` on CLOCK_MONOTONIC; the quiet window's CPU), so one measurement
serves both sides; this module says how each contender is started and when a group is ready."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from bench.backend_groups import ZooKeeperGroup
from bench.designs import BACKEND_DESIGNS, RAFT_TIMEOUT, Design
from bench.group import Group, Life, Slot
from bench.measure import rounded, rss_mib
from harness.services import rebindable_port

PEERS = Path(__file__).resolve().parent / "peers"
SRC = Path(__file__).resolve().parents[1] / "src"
# PySyncObj with its connectionTimeout raised above any leadership's length in a run: it closes a
# connection that received nothing for that long, and two followers send each other nothing while a
# leader lives, so with the default 3.5 s the link between them is gone when the leader dies.
RAISED_CONNECTION_TIMEOUT = 3600.0


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    backend: str  # zookeeper | raft
    script: str  # under bench/peers/
    note: str
    env: dict[str, str] = field(default_factory=dict)

    @property
    def ours(self) -> bool:
        return self.key == "ours"


CONTENDERS: dict[str, list[Contender]] = {
    "zookeeper": [
        Contender("ours", "ours (ZooKeeperBackend)", "zookeeper", "ours.py",
                  "DistributedMutex with ZooKeeperBackend's defaults, the library alone (bench/peers/ours.py)"),
        Contender("kazoo", "kazoo Election", "zookeeper", "kazoo_election.py",
                  "kazoo's own recipe, zk.Election(path, id).run(lead), on the same server with the same "
                  "session timeout (bench/peers/kazoo_election.py)"),
    ],
    "raft": [
        Contender("ours", "ours (RaftBackend)", "raft", "ours.py",
                  "DistributedMutex with RaftBackend's defaults, the library alone (bench/peers/ours.py)"),
        Contender("pysyncobj", "PySyncObj", "raft", "pysyncobj_member.py",
                  "pysyncobj.SyncObj, raftMin/MaxTimeout = our election timeout, graceful with its own "
                  "transferLeadership(), its default connectionTimeout 3.5 s (bench/peers/pysyncobj_member.py)"),
        Contender("pysyncobj-ct", f"PySyncObj, connectionTimeout {RAISED_CONNECTION_TIMEOUT:g} s", "raft",
                  "pysyncobj_member.py",
                  "the same, with connectionTimeout raised so that the idle link between two followers is not "
                  "closed while a leader lives: the first vote request after the leader dies then arrives",
                  {"PSO_CONNECTION_TIMEOUT": f"{RAISED_CONNECTION_TIMEOUT:g}"}),
    ],
}


def peer_design(backend: str) -> Design:
    """The backend's design, whose ``renew`` is the span the kill's random phase is drawn from: on
    ZooKeeper the slowest periodic message of either side, kazoo's ping after a third of the session
    timeout of silence (both sides' sessions are kazoo's); on Raft the heartbeats (0.1 s) are within
    the renew interval already."""
    design = BACKEND_DESIGNS[backend]
    if backend == "zookeeper":
        return replace(design, renew=max(design.renew, design.lease / 3))
    return design


def peer_unavailable(backend: str) -> str | None:
    """Why the real peers of ``backend`` cannot run here, or None."""
    import importlib.util

    module = {"zookeeper": "kazoo", "raft": "pysyncobj"}[backend]
    if importlib.util.find_spec(module) is None:
        return f"the {module} package is not installed (make bench installs requirements-bench.txt)"
    return None


class PeerGroup(Group):
    """3 processes of one contender; subclasses say where its backend is."""

    contender: Contender

    def __init__(self, bench: Any, name: str, contender: Contender, size: int = 3) -> None:
        self.contender = contender
        self.ready_path = bench.out / f"{name}.ready.jsonl"
        super().__init__(bench, name, peer_design(contender.backend), size)

    def env(self, slot: Slot) -> dict[str, str]:
        ours = ("MYSQL_", "AZURE_", "BENCH_", "ZOOKEEPER_", "RAFT_", "ELECTION_BACKEND", "PSO_", "PEER_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(ours) and k != "PYTHONPATH"}
        if self.contender.ours:  # the library from this checkout; a peer gets nothing of ours on its path
            env["PYTHONPATH"] = str(SRC)
        env.update(self.backend_env(slot))
        env.update(self.contender.env)
        env.update({"PEER_ID": slot.name, "PEER_JOURNAL": str(self.journal), "PEER_READY": str(self.ready_path),
                    "PYTHONUNBUFFERED": "1"})
        return env

    def start(self, slot: Slot) -> None:
        log = (self.bench.out / "logs" / f"{slot.name}.log").open("ab")
        slot.process = subprocess.Popen([sys.executable, str(PEERS / self.contender.script)], env=self.env(slot),
                                        cwd=self.bench.out, stdout=log, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL)
        log.close()
        slot.lives.append(Life(slot.process.pid, time.monotonic()))

    def quiet_window(self, seconds: float) -> dict[str, Any]:
        """The cost at rest (bench/group.py), and each process's memory at the window's end."""
        result = super().quiet_window(seconds)
        rss = {slot.name: rounded(rss_mib(slot.life.pid), 1) for slot in self.slots if slot.alive}
        workers = [v for name, v in rss.items() if name != result["leader"] and v is not None]
        result.update({"rss_mib": rss, "leader_rss_mib": rss.get(result["leader"]),
                       "worker_rss_mib": rounded(statistics.mean(workers), 1) if workers else None,
                       "rss_how": "VmRSS of /proc/<pid>/status at the end of the window"})
        return result

    def overlaps(self) -> list[str]:
        """Two processes acting as leader at the same moment, from the journal (a killed process's
        leadership ends at its kill)."""
        intervals = self.leadership_intervals(self.end or time.monotonic())
        found = []
        for i, a in enumerate(intervals):
            for b in intervals[i + 1:]:
                if (a["slot"], a["pid"]) != (b["slot"], b["pid"]) and b["start"] < a["stop"]:
                    found.append(f"{a['slot']} (pid {a['pid']}, term {a['term']}) and {b['slot']} (pid {b['pid']}, "
                                 f"term {b['term']}) both led for {a['stop'] - b['start']:.3f} s")
        return found


class ZooKeeperPeerGroup(PeerGroup, ZooKeeperGroup):
    """On a standalone ZooKeeper server of the group's own (ZooKeeperGroup: the same tick for both
    sides); ready when the server holds one ephemeral znode per process (both recipes make one)."""

    def backend_env(self, slot: Slot) -> dict[str, str]:
        return {"ELECTION_BACKEND": "zookeeper", "ZOOKEEPER_HOSTS": self.server.hosts, "ZOOKEEPER_PATH": "/election",
                "ZOOKEEPER_SESSION_TIMEOUT": f"{BACKEND_DESIGNS['zookeeper'].lease:g}"}


class RaftPeerGroup(PeerGroup):
    """3 fixed members talking to each other directly (no proxy: PySyncObj's messages are not ours
    to count, and a proxy would slow one side only). Ready when every member but the leader has said
    it is in the cluster (PEER_READY) since it (re)started, and the journal names a living leader."""

    backend = "raft"
    anchored_kills = False
    poll_interval = 0.05
    readiness = "not every follower said it is in the cluster (its PEER_READY line) since it (re)started"
    renewal_evidence = "heartbeat"

    def setup(self) -> None:
        self.data_dir = self.bench.out / "peers" / self.name
        self.data_dir.mkdir(parents=True, exist_ok=True)
        for slot in self.slots:
            slot.port = rebindable_port()  # a member restarts on it: not an ephemeral port

    def backend_env(self, slot: Slot) -> dict[str, str]:
        low, high = RAFT_TIMEOUT
        env = {"RAFT_ELECTION_TIMEOUT": f"{low * 1000:g}-{high * 1000:g}"}
        if self.contender.ours:
            env.update({"ELECTION_BACKEND": "raft", "RAFT_DATA_DIR": str(self.data_dir), "RAFT_PEERS_JSON":
                        json.dumps({s.name: ["127.0.0.1", s.port] for s in self.slots})})
        else:
            env.update({"PSO_SELF": f"127.0.0.1:{slot.port}", "PSO_JOURNAL": str(self.data_dir / f"{slot.name}.log"),
                        "PSO_PARTNERS": ",".join(f"127.0.0.1:{s.port}" for s in self.slots if s is not slot)})
        return env

    def ready(self) -> bool:
        found = self.current_leader()
        if found is None or not all(slot.alive for slot in self.slots):
            return False
        try:
            lines = [json.loads(line) for line in self.ready_path.read_text().splitlines() if line.endswith("}")]
        except FileNotFoundError:
            return False
        said = {(r["instance"], r["pid"]) for r in lines}
        return all((slot.name, slot.life.pid) in said for slot in self.slots if slot is not found[0])

    def renewal_marks(self, slot: Slot) -> list[float]:
        return []

    def cost(self, leader: Slot, w0: float, w1: float, before: Any, after: Any) -> dict[str, Any]:
        return {"counted": "not counted", "per_s": None,
                "how": "members talk directly (no proxy), so only CPU and memory are measured"}


def make_group(bench: Any, name: str, contender: Contender) -> PeerGroup:
    cls = ZooKeeperPeerGroup if contender.backend == "zookeeper" else RaftPeerGroup
    return cls(bench, name, contender)
