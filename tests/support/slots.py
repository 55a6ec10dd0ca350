"""Counting a periodic job's runs per interval across replicas that fail over, for the scheduler
integrations' process tests (APScheduler, Celery beat).

Each run appends one line ``<slot> <term> <node> <outcome>`` to a file: the slot is the whole second
of the wall clock the run was due in (the jobs run every second, on whole seconds), the node the
replica that scheduled it, the outcome ``accepted`` (its fenced write went through), ``refused``
(the fence saw a newer term) or ``no-term`` (the job found its replica not leading).

``Scenario`` drives three replicas through a SIGKILL of the leader and a SIGTERM of the next one
(each started again afterwards: a Raft cluster of three needs two to elect), waiting on the runs
themselves, and ``Tally`` says what happened per slot.
"""

from __future__ import annotations

import math
import os
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.processes import Instance, wait_until
from support.scheduler_backend import AZURE_LEASE, POSTGRES_LEASE, REDIS_LEASE, ZOOKEEPER_SESSION

LEADING = r"leading \(term (\d+)\)"  # what both integrations log when their replica starts to lead
# What a replica prints once it contends (both integrations), and on Raft once its peer listens: a
# replica (started again) is ready for the next fault only then. Three Raft members need two to
# elect: a fault on the leader while the third is still starting leaves the one survivor waiting for
# it (a SIGTERM's handover took 1.7 s instead of 0.01 s when a restarted beat took 3.6 s to start
# on a loaded machine, and the next fault came 3 s after the restart).
CONTENDING = r"contending for leadership as"
RESTART_TIMEOUT = 30.0  # an interpreter importing Celery on two busy cores, and its election's start


def ready_lines(kind: str) -> tuple[str, ...]:
    return (CONTENDING, r"raft: peer \S+ listening on") if kind == "raft" else (CONTENDING,)
# How long until another replica leads, per backend and fault (SIGSTOP: as SIGKILL, the frozen
# leader's lease runs out). Raft's default election timeout is 1-2 s: the followers notice a dead
# leader within 2 s and elect within a round trip, or, when the two left time out together and split
# the vote, within another 2 s; plus 2 s for three interpreters on two cores busy with the rest of
# the suite (as tests/test_make_demo.py allows: 5.3 s was seen there). ZooKeeper: the killed
# leader's session expires (plus 2 s, as tests/test_zookeeper_failover.py allows). PostgreSQL and
# Redis: the lease runs out on the server (at most a lease after the last renewal), then a
# contender's next try (every 0.5 s on PostgreSQL; Redis wakes its contenders at the expiry), plus
# 2 s for two busy cores. A leader that steps down hands over at once on all (a second and a half
# for a loaded machine).
FAILOVER = {"raft": {"SIGKILL": 6.0, "SIGSTOP": 6.0, "SIGTERM": 1.5},
            "zookeeper": {"SIGKILL": ZOOKEEPER_SESSION + 2, "SIGSTOP": ZOOKEEPER_SESSION + 2, "SIGTERM": 1.5},
            "postgres": {"SIGKILL": POSTGRES_LEASE + 2.5, "SIGSTOP": POSTGRES_LEASE + 2.5, "SIGTERM": 1.5},
            "redis": {"SIGKILL": REDIS_LEASE + 2.5, "SIGSTOP": REDIS_LEASE + 2.5, "SIGTERM": 1.5},
            # The blob lease: contenders try every second (ACQUIRE_INTERVAL), also after a release.
            "azure": {"SIGKILL": AZURE_LEASE + 3.5, "SIGSTOP": AZURE_LEASE + 3.5, "SIGTERM": 2.5}}
# The faults of the short form (make test), in order; SCHEDULER_FAULT_ROUNDS=N repeats them N times
# (the long form).
FAULTS = (signal.SIGKILL, signal.SIGTERM, signal.SIGSTOP)


@dataclass(frozen=True)
class Run:
    slot: int
    term: int | None
    node: str
    outcome: str


def read_runs(path: Path) -> list[Run]:
    runs = []
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        slot, term, node, outcome = line.split()
        runs.append(Run(int(slot), None if term == "None" else int(term), node, outcome))
    return runs


@dataclass
class Fault:
    """One fault and what followed: ``failover`` from the signal to the next replica's "leading" line."""

    kind: str  # "SIGKILL", "SIGTERM" or "SIGSTOP"
    node: str
    at_wall: float
    at_mono: float
    last_slot_before: int
    next_leader: str = ""
    failover: float = math.nan
    first_slot_after: int = 0
    # SIGSTOP: the runs the frozen replica made under its old term once woken (none may be accepted).
    woken_runs: list[Run] = field(default_factory=list)
    # SIGKILL, SIGTERM: how long the replica started again took to contend (before the next fault).
    ready_after: float = math.nan

    @property
    def missed(self) -> int:
        return self.first_slot_after - self.last_slot_before - 1


@dataclass
class Tally:
    runs: list[Run]
    faults: list[Fault] = field(default_factory=list)

    @property
    def accepted(self) -> list[Run]:
        return sorted((r for r in self.runs if r.outcome == "accepted"), key=lambda r: r.slot)

    @property
    def acted(self) -> list[Run]:
        """Runs that had a term and tried to write (accepted or refused): a ``no-term`` run found its
        replica not leading and did nothing."""
        return [r for r in self.runs if r.outcome != "no-term"]

    def per_slot(self) -> Counter[int]:
        """How many runs acted in each slot: one per interval is the whole point."""
        return Counter(r.slot for r in self.acted)

    def twice(self) -> dict[int, list[Run]]:
        counts = self.per_slot()
        return {slot: [r for r in self.acted if r.slot == slot] for slot, n in counts.items() if n > 1}

    def missed_slots(self) -> list[int]:
        slots = {r.slot for r in self.accepted}
        return [s for s in range(min(slots), max(slots) + 1) if s not in slots] if slots else []

    def terms_going_back(self) -> list[tuple[Run, Run]]:
        """Accepted runs whose term is lower than an earlier slot's accepted run's: a stale writer."""
        back, highest = [], None
        for run in self.accepted:
            if highest is not None and run.term is not None and highest.term is not None and run.term < highest.term:
                back.append((highest, run))
            if highest is None or (run.term or 0) > (highest.term or 0):
                highest = run
        return back

    def summary(self) -> str:
        histogram = Counter(self.per_slot().values())
        lines = [f"{len(self.accepted)} accepted runs over slots {self.accepted[0].slot}..{self.accepted[-1].slot}"
                 if self.accepted else "no accepted run",
                 f"runs per slot: {dict(sorted(histogram.items()))} (runs: slots)",
                 f"outcomes: {dict(Counter(r.outcome for r in self.runs))}",
                 f"missed slots: {self.missed_slots()}"]
        lines += [f"{f.kind} {f.node}: {f.next_leader} led {f.failover:.2f} s later; slots missed: {f.missed}"
                  + (f"; woken, it ran {[r.outcome for r in f.woken_runs]} under its old term"
                     if f.kind == "SIGSTOP" else "")
                  + (f"; started again, contending {f.ready_after:.2f} s later" if not math.isnan(f.ready_after) else "")
                  for f in self.faults]
        return "\n".join(lines)


class Scenario:
    """Replicas (``processes``, by node name) whose job runs are read by ``runs()``."""

    def __init__(self, processes: dict[str, Instance], runs: Callable[[], list[Run]], *, describe: Callable[[], str],
                 restart: Callable[[str], Instance] | None = None, ready: tuple[str, ...] = (CONTENDING,)):
        self.processes = processes
        self.restart = restart
        self.ready = ready
        self.runs = runs
        self.describe = describe
        self.faults: list[Fault] = []

    def accepted_after(self, slot: int, count: int, timeout: float, *, not_from: str | None = None) -> list[Run]:
        """Wait for ``count`` accepted runs with a slot after ``slot`` (from another node than ``not_from``)."""
        def enough() -> list[Run] | None:
            found = sorted((r for r in self.runs() if r.outcome == "accepted" and r.slot > slot
                            and r.node != not_from), key=lambda r: r.slot)
            return found if len(found) >= count else None

        try:
            found: list[Run] = wait_until(enough, timeout, f"no {count} accepted run(s) after slot {slot}"
                                                            + (f" from another node than {not_from}" if not_from else ""))
        except AssertionError as exc:
            raise AssertionError(f"{exc}\nruns: {self.runs()[-12:]}\n{self.describe()}") from None
        return found

    def fault(self, signum: signal.Signals, *, steady: int, timeout: float) -> Fault:
        """Let the job run ``steady`` times, signal the replica that ran the last one, wait until
        another replica's run is accepted; what it took. SIGSTOP: the frozen replica is woken
        (SIGCONT) once the next leader has run a few times, and its runs are watched for a while."""
        last = self.accepted_after(max((r.slot for r in self.runs()), default=0), steady, timeout)[-1]
        victim = last.node
        at_wall, at_mono = time.time(), self.processes[victim].signal(signum)
        first = self.accepted_after(last.slot, 1, timeout, not_from=victim)[0]
        woken: list[Run] = []
        if signum == signal.SIGSTOP:
            self.accepted_after(first.slot, 2, 10, not_from=victim)
            woke = max(r.slot for r in self.runs())
            self.processes[victim].signal(signal.SIGCONT)
            woke_at = math.floor(time.time())
            self.accepted_after(woke, 3, 10)  # the frozen replica has had three seconds to misbehave
            # Runs due from its waking on (a run it had scheduled before the freeze may still land).
            woken = [r for r in self.runs() if r.node == victim and r.term == last.term and r.slot >= woke_at]
        else:
            self.processes[victim].wait(15)
        # Read once the victim has exited (or woken): a run it had going when signalled may have ended since.
        before = max(r.slot for r in self.runs() if r.outcome == "accepted" and r.node == victim and r.slot < first.slot)
        fault = Fault(signum.name, victim, at_wall, at_mono, before, first.node, math.nan, first.slot, woken)
        line = self.processes[first.node].find(LEADING, after=at_mono)
        fault.failover = (line.at - at_mono) if line is not None else math.nan
        self.faults.append(fault)
        if self.restart is not None and signum != signal.SIGSTOP:  # three Raft members need two to elect
            restarted_at = time.monotonic()
            self.processes[victim] = self.restart(victim)
            fault.ready_after = self.wait_ready(self.processes[victim], after=restarted_at) - restarted_at
        return fault

    def wait_ready(self, process: Instance, after: float = 0.0) -> float:
        """When ``process`` printed its last ``ready`` line (monotonic), waiting for them."""
        return max(process.wait_for(pattern, RESTART_TIMEOUT, after=after).at for pattern in self.ready)

    def faults_in_turn(self, failover: dict[str, float]) -> None:
        """FAULTS once (the short form), or SCHEDULER_FAULT_ROUNDS times (the long form), once every
        replica contends (a first leader needs only two of the three)."""
        for process in self.processes.values():
            self.wait_ready(process)
        for _ in range(int(os.environ.get("SCHEDULER_FAULT_ROUNDS", "1"))):
            for signum in FAULTS:
                self.fault(signum, steady=3, timeout=failover[signum.name] + 10)


def check(tally: Tally, failover: dict[str, float], stored: list[tuple[int, int, str]], describe: str) -> None:
    """What the process tests assert: one run per interval, missed ones only around a fault and at most
    the failover's worth, no stale term accepted, the fenced table matching the runs."""
    assert not tally.twice(), f"intervals that ran more than once: {tally.twice()}\n{tally.summary()}\n{describe}"
    assert not tally.terms_going_back(), f"runs under a stale term were accepted: {tally.terms_going_back()}"
    assert stored == [(r.slot, r.term, r.node) for r in tally.accepted], "the fenced table and the runs disagree"
    around_faults: set[int] = set()
    for fault in tally.faults:
        stale = [r for r in fault.woken_runs if r.outcome == "accepted"]
        assert not stale, f"{fault.node}, frozen and woken, wrote under its old term: {stale}\n{tally.summary()}"
        bound = failover[fault.kind]
        assert fault.failover <= bound, f"{fault.kind} {fault.node}: took {fault.failover:.2f} s\n{tally.summary()}"
        # A slot is missed only if its whole second passed while nobody led: at most the failover's
        # seconds, plus the one the new leader became leader in.
        assert fault.missed <= math.ceil(bound) + 1, f"{fault.kind}: {fault.missed} slots missed\n{tally.summary()}"
        around_faults |= set(range(fault.last_slot_before + 1, fault.first_slot_after))
    elsewhere = [s for s in tally.missed_slots() if s not in around_faults]
    assert not elsewhere, f"slots missed away from any fault: {elsewhere}\n{tally.summary()}\n{describe}"
