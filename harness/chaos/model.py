"""The chaos harness's vocabulary: its settings and fault schedule, a leadership interval from the
journal, what one round records, and the small helpers the checks share."""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from DistributedMutex.journal import read_journal
from harness.chaos.backends import BACKEND_FAULTS, backend_timing

# Every fault there is; each backend's rounds draw from its own (backends.BACKEND_FAULTS).
FAULTS = ("kill", "freeze", "cut", "slow", "azurite-restart", "server-restart", "conn-kill", "mysql-down",
          "clock-jump")
# A leader checks its deadline, then sends: the request may reach the server a moment later.
SEND_SLACK = 0.5
STALE_REFUSED = re.compile(r"write refused by the fencing check")
LOST_BY_STORAGE = re.compile(r"the storage lost it; waiting")


@dataclass
class ChaosSettings:
    """The run's settings. ``backend`` other than azure takes that backend's default timing (a 5 s
    lease) and its ``slow`` latency (backends.backend_timing) in place of the Azure values below."""

    rounds: int = 21
    instances: int = 3
    seed: int = 1
    backend: str = "azure"
    lease: float = 15
    renew: float = 5.0
    acquire: float = 2.0
    fetch_interval: float = 1.0
    cities: tuple[str, ...] = ("Hanoi", "Tokyo")
    mysql_outage: float = 30.0
    slow_latency: float = 2.5
    clock_jump: float = 600.0  # within Azure's 15-minute tolerance for a request's x-ms-date
    safety_margin: float = 2.0  # ElectionTiming's default, which the Azure instances run with

    def __post_init__(self) -> None:
        if self.backend not in BACKEND_FAULTS:
            raise ValueError(f"backend must be one of {', '.join(BACKEND_FAULTS)}, got {self.backend!r}")
        if self.backend != "azure":
            timing, self.slow_latency = backend_timing(self.backend)
            self.lease, self.renew, self.acquire = timing.lease_duration, timing.renew_interval, timing.acquire_interval
            self.safety_margin = timing.safety_margin
            self.mysql_outage = 2 * self.lease  # enough to buffer readings, in a round of a short run

    @property
    def faults(self) -> tuple[str, ...]:
        return BACKEND_FAULTS[self.backend]

    @property
    def recovery_bound(self) -> float:
        return self.lease + self.acquire + 3

    def schedule(self) -> list[str]:
        """Every fault of the backend equally often (at least once), in a seeded random order."""
        faults = [self.faults[i % len(self.faults)] for i in range(max(self.rounds, len(self.faults)))]
        random.Random(self.seed).shuffle(faults)
        return faults


@dataclass
class Interval:
    instance: str
    term: int
    start: float
    end: float  # when it stopped acting (its deadline if it noticed later), or now if still leading
    open: bool
    reason: str = ""

    @property
    def slot(self) -> str:
        return self.instance.rsplit("-g", 1)[0]


@dataclass
class RoundResult:
    number: int
    fault: str
    victim: str | None
    started: float
    fault_at: float
    healed_at: float
    ended: float = 0.0
    failovers: int = 0
    longest_leaderless: float = 0.0
    recovery: float = 0.0  # from the healing to a leader acting
    takeover: float | None = None  # kill, freeze, cut: from the fault to another instance acting
    stale_refused: int = 0
    buffered_flushed: int = 0
    connections_killed: int = 0  # conn-kill: the leader's connections the server killed
    violations: list[str] = field(default_factory=list)


def journal_intervals(journal: Path, now: float, deaths: dict[str, float] | None = None) -> list[Interval]:
    """Leadership intervals from the journal, by start; one still open ends ``now``, or at its
    instance's death (``deaths``: instance name -> when the harness saw it die)."""
    deaths = deaths or {}
    opened: dict[str, Interval] = {}
    done: list[Interval] = []
    for record in read_journal(journal):
        name = record["instance"]
        if record["event"] == "start":
            opened[name] = Interval(name, record["term"], record["mono"], now, True)
        elif record["event"] == "stop" and name in opened:
            interval = opened.pop(name)
            interval.end, interval.open, interval.reason = record["acting_until"], False, record["reason"]
            done.append(interval)
    for name, interval in opened.items():
        if name in deaths:
            interval.end, interval.open, interval.reason = deaths[name], False, "killed"
        done.append(interval)
    return sorted(done, key=lambda i: i.start)


def containing(intervals: list[Interval], at: float, slack: float) -> Interval | None:
    return next((i for i in intervals if i.start <= at <= i.end + slack), None)


def epoch(naive_utc: datetime) -> int:
    return int(naive_utc.replace(tzinfo=timezone.utc).timestamp())


def hold_until(moment: float) -> None:
    """Keep a fault in place until ``moment`` (the fault's duration, not a synchronisation)."""
    time.sleep(max(0.0, moment - time.monotonic()))
