"""What the benchmark compares: each design's timing and release behaviour (phase 1), the election
backends with the product's own defaults (phase 2), and whether this checkout can run a backend."""

from __future__ import annotations

import importlib.util
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from distributed_mutex_demo.backend_settings import RaftSettings, ZooKeeperSettings, parse_election_timeout
from distributed_mutex_demo.config import DEFAULTS


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

BACKENDS = ("azure", "zookeeper", "raft", "postgres", "redis")
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


def _postgres_design() -> Design:
    from DistributedMutex.backends.postgres.arguments import postgres_timing

    lease = float(DEFAULTS["POSTGRES_LEASE_DURATION"] or 5)
    t = postgres_timing(lease)
    return Design("postgres", "PostgreSQL (the product)", t.lease_duration, t.renew_interval, t.acquire_interval,
                  t.safety_margin, emulated=False, shown_as=f"lease {lease:g} s (server's clock)",
                  note="ELECTION_BACKEND=postgres with its defaults, direct (LISTEN/NOTIFY); a PostgreSQL "
                       "cluster of its own per group")


def _redis_design() -> Design:
    from DistributedMutex.backends.redis.arguments import redis_timing

    lease = float(DEFAULTS["REDIS_LEASE_DURATION"] or 5)
    t = redis_timing(lease)
    return Design("redis", "Redis (the product)", t.lease_duration, t.renew_interval, t.acquire_interval,
                  t.safety_margin, emulated=False, shown_as=f"lease {lease:g} s (server's clock)",
                  note="ELECTION_BACKEND=redis with its defaults (pub/sub handover); a redis-server of its own "
                       "per group")


BACKEND_DESIGNS = {"azure": DESIGNS["ours"], "zookeeper": _zookeeper_design(), "raft": _raft_design(),
                   "postgres": _postgres_design(), "redis": _redis_design()}
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
            return "src/DistributedMutex/backends/zookeeper/ is not in this checkout"
        if missing("kazoo"):
            return "the kazoo package is not installed (make deps installs requirements.txt)"
        if not (Path("/usr/share/java/zookeeper.jar").exists() and shutil.which("java")):
            return "ZooKeeper is not installed (/usr/share/java/zookeeper.jar and java: apt-get install zookeeper)"
    if backend == "postgres":
        if missing("psycopg"):
            return "the psycopg package is not installed (make deps installs requirements.txt)"
        from harness.pg_cluster import BIN

        if not (BIN / "initdb").exists() and not shutil.which("initdb"):
            return f"PostgreSQL's initdb/pg_ctl are not installed ({BIN}; set PG_BINDIR; apt-get install postgresql)"
    if backend == "redis":
        if missing("redis"):
            return "the redis package is not installed (make deps installs requirements.txt)"
        if not shutil.which("redis-server"):
            return "redis-server is not installed (apt-get install redis-server)"
    if backend == "raft":
        if missing("DistributedMutex.backends.raft"):
            return "src/DistributedMutex/backends/raft/ is not in this checkout"
        import DistributedMutex.backends.raft

        if not hasattr(DistributedMutex.backends.raft, "RaftBackend"):
            return "DistributedMutex.backends.raft has no RaftBackend yet"
    return None


def design_window(design: Design, override: float | None = None) -> float:
    """A quiet window long enough for three renewals and three polls (unless told otherwise)."""
    return override if override is not None else max(30.0, 3 * design.renew, 3 * design.acquire)
