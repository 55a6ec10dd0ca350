"""The chaos harness: real instances of the demo, faults injected in rounds, invariants checked
from evidence the instances cannot fake.

    make chaos                       # 21 rounds, 3 instances, prints the report table
    make chaos CHAOS_ARGS="--rounds 7 --instances 5 --seed 3"

Set-up: N instances of ``python src/DistributedMutex/test.py`` share one lease blob on an Azurite
that keeps its data on disk (so it can be restarted), one MySQL database and a local OpenWeatherMap
stand-in. Each instance reaches Azurite through its own TCP proxy (to cut it off or slow it down)
and MySQL through one shared proxy (to take MySQL "down"). Faults, one per round:

    kill             SIGKILL the leader (it is restarted afterwards)
    freeze           SIGSTOP the leader for longer than the lease, then SIGCONT
    cut              blackhole the leader's storage proxy for longer than the lease, then heal
    slow             2.5 s of latency on every request of the leader's storage calls, for 3 renewals
    azurite-restart  stop Azurite and start it again on its data, while a leader holds the lease
    mysql-down       MySQL refuses connections for 30 s while the leader fetches and writes
    clock-jump       every instance's wall clock jumps 10 minutes forward, then back

Evidence, read after every round:
- the leadership journal (LEADERSHIP_JOURNAL): when each instance started and stopped acting, on
  CLOCK_MONOTONIC. It is the instances' claim, so it is checked against the rest:
- the weather server's own log: who fetched what, when (each instance has its own URL prefix);
- the storage proxies' wire log: when each instance's acquire/renew was sent and granted;
- the database: every row, in insertion order, stamped by the server's clock.
Invariants: no two leaders act at overlapping times; every fetch and every row falls inside a
leadership of the instance that made it, and no later than LEASE_DURATION after a granted
acquire/renew; no row of a lower term after one of a higher term; every reading fetched by a leader
that kept its leadership is stored exactly once; after each fault heals a leader acts within
LEASE_DURATION + ACQUIRE_INTERVAL + 3 s; no instance dies unasked, and no output has a traceback.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import timezone
from pathlib import Path

from DistributedMutex.journal import read_journal
from DistributedMutex.timing import ElectionTiming
from harness.fake_openweather import FakeOpenWeather, Request
from harness.httpwatch import HttpWatch
from harness.processes import Instance
from harness.services import Azurite, MySQLServer, connection_string
from harness.tcpproxy import TcpProxy

FAULTS = ("kill", "freeze", "cut", "slow", "azurite-restart", "mysql-down", "clock-jump")
CLOCKSHIFT = Path(__file__).resolve().parent / "clockshift"
# A leader checks its deadline, then sends: the request may reach the server a moment later.
SEND_SLACK = 0.5
STALE_REFUSED = re.compile(r"write refused by the fencing check")
LOST_BY_STORAGE = re.compile(r"the storage lost it; waiting")


@dataclass
class ChaosSettings:
    rounds: int = 21
    instances: int = 3
    seed: int = 1
    lease: int = 15
    renew: float = 5.0
    acquire: float = 2.0
    fetch_interval: float = 1.0
    cities: tuple[str, ...] = ("Hanoi", "Tokyo")
    mysql_outage: float = 30.0
    slow_latency: float = 2.5
    clock_jump: float = 600.0  # within Azure's 15-minute tolerance for a request's x-ms-date

    @property
    def recovery_bound(self) -> float:
        return self.lease + self.acquire + 3

    def schedule(self) -> list[str]:
        """Every fault equally often (at least once), in a seeded random order."""
        faults = [FAULTS[i % len(FAULTS)] for i in range(max(self.rounds, len(FAULTS)))]
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
    violations: list[str] = field(default_factory=list)


class Slot:
    """One instance position: its storage proxy, its wall-clock file, and the process running in it
    (a killed instance is replaced by the next generation in the same slot)."""

    def __init__(self, name: str, azurite_port: int, workdir: Path) -> None:
        self.name = name
        self.watch = HttpWatch()
        self.proxy = TcpProxy(azurite_port, watch=self.watch).start()
        self.clock_file = workdir / f"{name}.clock"
        self.clock_file.write_text("0\n")
        self.generation = 0
        self.instance: Instance | None = None
        self.retired: list[Instance] = []
        self.deaths: dict[str, float] = {}  # instance name -> when the harness saw it die

    def start(self, env: dict[str, str], cwd: Path) -> Instance:
        if self.instance is not None:
            self.retired.append(self.instance)
        self.generation += 1
        env = {**env, "CLOCKSHIFT_FILE": str(self.clock_file)}
        self.instance = Instance(f"{self.name}-g{self.generation}", env, cwd)
        return self.instance

    def shift_clock(self, seconds: float) -> None:
        tmp = self.clock_file.with_suffix(".tmp")
        tmp.write_text(f"{seconds}\n")
        tmp.replace(self.clock_file)  # atomic: the instance never reads half a number

    def all_instances(self) -> list[Instance]:
        return [*self.retired, *([self.instance] if self.instance else [])]


class Chaos:
    def __init__(self, settings: ChaosSettings, mysql: MySQLServer, workdir: Path,
                 say: Callable[[str], None] = print) -> None:
        self.s = settings
        self.mysql = mysql
        self.workdir = workdir
        self.say = say
        self.database = f"chaos_{uuid.uuid4().hex[:12]}"
        self.journal = workdir / "leadership.jsonl"
        self.azurite = Azurite(location=workdir / "azurite")
        self.weather = FakeOpenWeather()
        self.mysql_proxy = TcpProxy(mysql.port, mysql.host)
        self.slots: list[Slot] = []
        self.rounds: list[RoundResult] = []
        self.verified: set[tuple[str, int]] = set()  # (city, dt) readings proven stored
        self.lost: set[tuple[str, int]] = set()
        self.reported: set[tuple] = set()
        self.fetches_checked = 0
        self.last_row_checked = 0
        self.highest_term = 0
        self.longest_act_after_grant = 0.0
        self.wall_offset = time.time() - time.monotonic()  # the harness's own clock never jumps
        self.container = f"chaos-{uuid.uuid4().hex[:16]}"

    # -- set-up and tear-down ----------------------------------------------------------------

    def __enter__(self) -> Chaos:
        (self.workdir / "azurite").mkdir(parents=True, exist_ok=True)
        self.azurite.start()
        self.weather.start()
        self.mysql_proxy.start()
        self.slots = [Slot(f"i{n}", self.azurite.port, self.workdir) for n in range(1, self.s.instances + 1)]
        for slot in self.slots:
            slot.start(self._env(slot), self.workdir)
        return self

    def __exit__(self, *exc: object) -> None:
        for slot in self.slots:
            if slot.instance is not None:
                slot.instance.stop()
            slot.proxy.close()
            for instance in slot.all_instances():
                (self.workdir / f"{instance.name}.log").write_text(instance.output + "\n")
        self.mysql_proxy.close()
        self.weather.stop()
        self.azurite.stop()
        try:
            self.mysql.drop_database(self.database)
        except Exception:  # noqa: BLE001 - clean-up only
            pass

    def _env(self, slot: Slot) -> dict[str, str]:
        s = self.s
        return {
            "AZURE_STORAGE_CONNECTION_STRING": connection_string(slot.proxy.port),
            "CONTAINER_NAME": self.container,
            "BLOB_NAME": "weather-leader",
            "LEASE_DURATION": str(s.lease),
            "RENEW_INTERVAL": str(s.renew),
            "ACQUIRE_INTERVAL": str(s.acquire),
            "OPENWEATHER_API_KEY": self.weather.api_key,
            "OPENWEATHER_URL": self.weather.url_for(slot.name),
            "WEATHER_CITIES": ",".join(s.cities),
            "FETCH_INTERVAL": str(s.fetch_interval),
            "READ_INTERVAL": "2",
            # A write may wait 5 s on the fencing row's lock while a frozen predecessor holds it.
            "LEADER_STALL_TIMEOUT": "12",
            "MYSQL_HOST": "127.0.0.1",
            "MYSQL_PORT": str(self.mysql_proxy.port),
            "MYSQL_USER": self.mysql.user,
            "MYSQL_PASSWORD": self.mysql.password,
            "MYSQL_DATABASE": self.database,
            "LEADERSHIP_JOURNAL": str(self.journal),
            "LOG_LEVEL": "INFO",
            "PYTHONPATH": str(CLOCKSHIFT),
        }

    # -- the run -----------------------------------------------------------------------------

    def run(self) -> list[RoundResult]:
        self.wait_for_leader(self.s.recovery_bound + 10, "no leader after the instances started")
        for number, fault in enumerate(self.s.schedule(), 1):
            result = self.run_round(number, fault)
            self.say(f"round {number:2d} {fault:<16} {result.ended - result.started:5.1f}s "
                     f"failovers={result.failovers} "
                     f"leaderless={result.longest_leaderless:5.1f}s recovery={result.recovery:5.1f}s "
                     f"violations={len(result.violations)}"
                     + "".join(f"\n    ! {v}" for v in result.violations))
        self.finish()
        return self.rounds

    def run_round(self, number: int, fault: str) -> RoundResult:
        leader = self.wait_for_leader(self.s.recovery_bound + 10, f"round {number}: no leader to start with")
        started = time.monotonic()
        refused_before = self.count_lines(STALE_REFUSED)
        victim, fault_at, healed_at = getattr(self, "_" + fault.replace("-", "_"))(leader)
        result = RoundResult(number, fault, victim, started, fault_at, healed_at)
        self.rounds.append(result)
        try:
            self.wait_for_steady(healed_at, self.s.recovery_bound + self.s.renew + 10,
                                 f"round {number} ({fault}): no leader renewing its lease afterwards")
            self.ensure_alive()
        except AssertionError as exc:
            result.violations.append(str(exc))
        result.ended = time.monotonic()
        result.stale_refused = self.count_lines(STALE_REFUSED) - refused_before
        self.check(result)
        return result

    # -- the faults: each returns (victim, when the fault began, when it was healed) ----------

    def _kill(self, leader: Slot) -> tuple[str, float, float]:
        instance = self.current(leader)
        at = instance.signal(signal.SIGKILL)
        instance.wait(10)
        leader.deaths[instance.name] = at
        self.wait_for_leader(self.s.recovery_bound + 5, "no new leader after the kill", not_=instance.name)
        leader.start(self._env(leader), self.workdir)
        return instance.name, at, at

    def _freeze(self, leader: Slot) -> tuple[str, float, float]:
        instance = self.current(leader)
        at = instance.signal(signal.SIGSTOP)
        try:
            self.wait_for_leader(self.s.recovery_bound + 5, "no new leader while the old one is frozen",
                                 not_=instance.name)
            _hold_until(at + self.s.lease + 1)  # the fault itself: frozen for longer than the lease
        finally:
            healed = instance.signal(signal.SIGCONT)
        self.wait_for_stop(instance.name, 10)
        return instance.name, at, healed

    def _cut(self, leader: Slot) -> tuple[str, float, float]:
        instance = self.current(leader)
        at = time.monotonic()
        leader.proxy.blackhole()
        try:
            self.wait_for_leader(self.s.recovery_bound + 5, "no new leader while the old one is cut off",
                                 not_=instance.name)
            _hold_until(at + self.s.lease + 1)
        finally:
            leader.proxy.heal()
        healed = time.monotonic()
        self.wait_for_stop(instance.name, 10)
        return instance.name, at, healed

    def _slow(self, leader: Slot) -> tuple[str, float, float]:
        at = time.monotonic()
        leader.proxy.latency = self.s.slow_latency
        try:
            _hold_until(at + 3 * self.s.renew)
        finally:
            leader.proxy.latency = 0.0
        return self.current(leader).name, at, time.monotonic()

    def _azurite_restart(self, leader: Slot) -> tuple[str, float, float]:
        at = time.monotonic()
        self.azurite.stop()
        _hold_until(at + 2)
        self.azurite.start()
        return self.current(leader).name, at, time.monotonic()

    def _mysql_down(self, leader: Slot) -> tuple[str, float, float]:
        at = time.monotonic()
        self.mysql_proxy.down()
        try:
            _hold_until(at + self.s.mysql_outage)
        finally:
            self.mysql_proxy.up()
        return self.current(leader).name, at, time.monotonic()

    def _clock_jump(self, leader: Slot) -> tuple[str, float, float]:
        at = time.monotonic()
        for offset in (self.s.clock_jump, -self.s.clock_jump):
            for slot in self.slots:
                slot.shift_clock(offset)
            _hold_until(time.monotonic() + 2 * self.s.renew)
        for slot in self.slots:
            slot.shift_clock(0)
        return self.current(leader).name, at, time.monotonic()

    # -- observing ---------------------------------------------------------------------------

    def intervals(self, now: float | None = None) -> list[Interval]:
        """Leadership intervals from the journal; a killed instance's open one ends at its death."""
        now = time.monotonic() if now is None else now
        deaths = {name: at for slot in self.slots for name, at in slot.deaths.items()}
        opened: dict[str, Interval] = {}
        done: list[Interval] = []
        for record in read_journal(self.journal):
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

    def leader_name(self) -> str | None:
        current = [i for i in self.intervals() if i.open]
        return current[-1].instance if current else None

    def wait_for_leader(self, timeout: float, message: str, not_: str | None = None) -> Slot:
        deadline = time.monotonic() + timeout
        while True:
            name = self.leader_name()
            if name is not None and name != not_:
                slot = next(s for s in self.slots if name.startswith(s.name + "-"))
                if slot.instance is not None and slot.instance.name == name:
                    return slot
            if time.monotonic() >= deadline:
                raise AssertionError(f"{message} (waited {timeout:g} s)")
            time.sleep(0.05)

    def wait_for_steady(self, after: float, timeout: float, message: str) -> Slot:
        """A leader whose lease storage granted it an acquire or renewal after ``after``: the
        round's fault has played out (an Azurite restart can cost the lease only at the next
        renewal), so the next round starts from a settled state and is judged on its own."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                slot = self.wait_for_leader(max(0.0, deadline - time.monotonic()), message)
            except AssertionError:
                raise AssertionError(f"{message} (waited {timeout:g} s)") from None
            if any(t >= after for t in slot.watch.lease_grants()):
                return slot
            if time.monotonic() >= deadline:
                raise AssertionError(f"{message} (waited {timeout:g} s)")
            time.sleep(0.05)

    def wait_for_stop(self, instance: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while any(i.open and i.instance == instance for i in self.intervals()):
            if time.monotonic() >= deadline:
                raise AssertionError(f"{instance} did not record the end of its leadership within {timeout:g} s")
            time.sleep(0.05)

    def current(self, slot: Slot) -> Instance:
        assert slot.instance is not None
        return slot.instance

    def ensure_alive(self) -> None:
        for slot in self.slots:
            instance = self.current(slot)
            if instance.process.poll() is not None:
                raise AssertionError(f"{instance.name} died (exit code {instance.process.returncode}):\n"
                                     f"{instance.tail()}")

    def count_lines(self, pattern: re.Pattern[str]) -> int:
        return sum(i.count(pattern.pattern) for slot in self.slots for i in slot.all_instances())

    def rows(self) -> list[tuple]:
        try:
            return self.mysql.query(self.database, "SELECT id, city, observed_at, leader_id, term, stored_at"
                                    " FROM weather ORDER BY id")
        except Exception:  # noqa: BLE001 - before the first write the table may not exist yet
            return []

    def to_mono(self, stored_at) -> float:
        return stored_at.replace(tzinfo=timezone.utc).timestamp() - self.wall_offset

    # -- the invariants ----------------------------------------------------------------------

    def check(self, result: RoundResult) -> None:
        """Check the evidence gathered since the last round (each fact is judged once)."""
        violations = result.violations
        intervals = self.intervals(result.ended)
        by_slot: dict[str, list[Interval]] = {}
        for interval in intervals:
            by_slot.setdefault(interval.slot, []).append(interval)

        # 1. No two instances act as leader at overlapping times.
        for n, a in enumerate(intervals):
            for b in intervals[n + 1:]:
                overlap = min(a.end, b.end) - max(a.start, b.start)
                if a.instance != b.instance and overlap > 0 and self._first_time(("overlap", a.start, b.start)):
                    violations.append(f"overlap {overlap:.3f} s: {a.instance} (term {a.term}) and "
                                      f"{b.instance} (term {b.term})")

        # 2. Every fetch inside a leadership of its instance, within the lease of a granted call.
        fetches = [r for r in self.weather.log() if r.client]
        for request in fetches[self.fetches_checked:]:
            owner = _containing(by_slot.get(request.client, []), request.mono, SEND_SLACK)
            if owner is None:
                violations.append(f"{request.client} fetched {request.city} at {request.mono:.2f} while not leading")
            self._check_within_lease(request.client, request.mono, f"fetch of {request.city}", violations)
            self._check_not_in_another_leadership(request.client, request.mono, f"fetch of {request.city}",
                                                  intervals, violations)
        self.fetches_checked = len(fetches)

        # 3. Rows: non-decreasing terms in insertion order; each written by a leader, while leading.
        # The rows first, then the server's log: the instances run on while we check, and a row read
        # now was fetched (and logged: the server logs before it answers) before we read it.
        rows = self.rows()
        served = {(r.city, r.dt) for r in self.weather.log() if r.client and r.dt is not None}
        for row_id, city, observed_at, leader_id, term, stored_at in rows:
            if row_id <= self.last_row_checked:
                continue
            self.last_row_checked = row_id
            if term < self.highest_term:
                violations.append(f"stale row {row_id}: term {term} after term {self.highest_term}")
            self.highest_term = max(self.highest_term, term)
            at = self.to_mono(stored_at)
            if _containing([i for i in intervals if i.instance == leader_id], at, SEND_SLACK) is None:
                violations.append(f"row {row_id} written by {leader_id} at {at:.2f} while not leading")
            self._check_within_lease(leader_id.rsplit("-g", 1)[0], at, f"row {row_id}", violations)
            self._check_not_in_another_leadership(leader_id.rsplit("-g", 1)[0], at, f"row {row_id}", intervals,
                                                  violations)
            if (city, _epoch(observed_at)) not in served:
                violations.append(f"row {row_id} ({city}, {observed_at}) matches no reading the weather server served")

        # 4. Nothing lost: every reading fetched by a leader that still leads is stored, once.
        self._check_nothing_lost(fetches, by_slot, result, violations)

        # 5. Recovery and leaderless time.
        self._measure_recovery(result, intervals)
        if result.fault in ("mysql-down", "clock-jump") and (result.failovers or self.leader_name() != result.victim):
            # Neither may cost the leader its lease: MySQL is not the lock, and deadlines are monotonic.
            violations.append(f"{result.fault} cost {result.victim} its leadership (leader now {self.leader_name()})")
        if result.recovery > self.s.recovery_bound:
            violations.append(f"no leader for {result.recovery:.1f} s after the fault healed "
                              f"(bound {self.s.recovery_bound:g} s)")

        # 6. No traceback anywhere.
        for slot in self.slots:
            for instance in slot.all_instances():
                if instance.find(r"Traceback") is not None and self._first_time(("traceback", instance.name)):
                    violations.append(f"a traceback in {instance.name}'s output:\n{instance.tail(40)}")

    def _first_time(self, key: tuple) -> bool:
        if key in self.reported:
            return False
        self.reported.add(key)
        return True

    def _check_within_lease(self, slot_name: str, at: float, what: str, violations: list[str]) -> None:
        """An act at most the acting window (lease - safety margin) after the last acquire/renewal
        the storage granted *and* answered before the act (plus the check-to-send slack)."""
        slot = next((s for s in self.slots if s.name == slot_name), None)
        grants = [t for t in (slot.watch.lease_grants(answered_by=at) if slot else []) if t <= at]
        window = self.s.lease - ElectionTiming().safety_margin
        if not grants or at - grants[-1] > window + SEND_SLACK:
            since = f"{at - grants[-1]:.1f} s after" if grants else "without"
            violations.append(f"{what} by {slot_name} {since} its last granted acquire/renewal "
                              f"(acting window {window:g} s)")
        else:
            self.longest_act_after_grant = max(self.longest_act_after_grant, at - grants[-1])

    def _check_not_in_another_leadership(self, who: str, at: float, what: str, intervals: list[Interval],
                                         violations: list[str]) -> None:
        """No slack here: an act inside another instance's leadership is an overlap, whatever the
        journal of the one who acted says."""
        for other in intervals:
            if other.slot != who and other.start < at < other.end:
                violations.append(f"{what} by {who} at {at:.2f} during {other.instance}'s leadership "
                                  f"(term {other.term})")
                return

    def _check_nothing_lost(self, fetches: list[Request], by_slot: dict[str, list[Interval]],
                            result: RoundResult, violations: list[str]) -> None:
        """Readings fetched in a leadership still going on must all be stored, once the leader had
        a fair chance to write them (bounded wait); the buffered ones are counted when they land."""
        settle = time.monotonic() + 3 * self.s.fetch_interval + 12
        while True:
            stored = {(city, _epoch(observed)): (term, self.to_mono(at))
                      for _, city, observed, _, term, at in self.rows()}
            missing = []
            for request in fetches:
                key = (request.city, request.dt)
                if request.dt is None or key in self.verified or request.mono > result.ended - 3:
                    continue
                owner = _containing(by_slot.get(request.client, []), request.mono, SEND_SLACK)
                if owner is None or not owner.open:
                    continue  # a deposed or killed leader's unsaved readings are not owed
                if key in stored:
                    self.verified.add(key)
                    if result.fault == "mysql-down" and result.fault_at <= request.mono <= result.healed_at:
                        result.buffered_flushed += 1
                else:
                    missing.append(key)
            if not missing or time.monotonic() >= settle:
                break
            time.sleep(0.2)
        for city, dt in missing:
            self.lost.add((city, dt))
            violations.append(f"lost reading: {city} at {dt}, fetched by a leader that kept its leadership")
        duplicates = self.mysql.query(self.database, "SELECT city, observed_at, COUNT(*) FROM weather"
                                      " GROUP BY city, observed_at HAVING COUNT(*) > 1") if self.rows() else []
        violations.extend(f"reading stored {n} times: {city} at {at}" for city, at, n in duplicates
                          if self._first_time(("duplicate", city, at)))

    def _measure_recovery(self, result: RoundResult, intervals: list[Interval]) -> None:
        window = [i for i in intervals if i.end > result.started and i.start < result.ended]
        result.failovers = sum(1 for i in window if result.started <= i.start)
        # Leaderless stretches inside the round: (from, to).
        gaps, moment = [], result.started
        for interval in sorted(window, key=lambda i: i.start):
            if interval.start > moment:
                gaps.append((moment, interval.start))
            moment = max(moment, interval.end)
        if moment < result.ended:
            gaps.append((moment, result.ended))
        result.longest_leaderless = max((end - start for start, end in gaps), default=0.0)
        # Recovery: the longest time without a leader counted from the fault's healing (a kill
        # heals at once; a freeze or cut usually has its successor before it heals).
        result.recovery = max((end - max(start, result.healed_at) for start, end in gaps if end > result.healed_at),
                              default=0.0)
        if result.fault in ("kill", "freeze", "cut"):
            successors = [i.start for i in window if i.start >= result.fault_at and i.instance != result.victim]
            result.takeover = (min(successors) if successors else result.ended) - result.fault_at

    def finish(self) -> None:
        """Stop every instance gracefully: each must exit 0."""
        for slot in self.slots:
            instance = self.current(slot)
            instance.process.send_signal(signal.SIGTERM)
        for slot in self.slots:
            instance = self.current(slot)
            code = instance.wait(15)
            if code != 0 and self.rounds:
                self.rounds[-1].violations.append(f"{instance.name} exited with {code} on SIGTERM:\n{instance.tail()}")

    # -- the report --------------------------------------------------------------------------

    def report(self) -> dict:
        per_fault = []
        for fault in FAULTS:
            rounds = [r for r in self.rounds if r.fault == fault]
            if not rounds:
                continue
            per_fault.append({
                "fault": fault,
                "rounds": len(rounds),
                "failovers": sum(r.failovers for r in rounds),
                "longest_leaderless_s": round(max(r.longest_leaderless for r in rounds), 2),
                "longest_recovery_s": round(max(r.recovery for r in rounds), 2),
                "longest_takeover_s": (round(max(r.takeover for r in rounds if r.takeover is not None), 2)
                                       if any(r.takeover is not None for r in rounds) else None),
                "stale_writes_refused": sum(r.stale_refused for r in rounds),
                "readings_buffered_flushed": sum(r.buffered_flushed for r in rounds),
                "violations": sum(len(r.violations) for r in rounds),
            })
        violations = [f"round {r.number} ({r.fault}): {v}" for r in self.rounds for v in r.violations]
        text = " ".join(violations)
        return {
            "settings": asdict(self.s),
            "rounds": len(self.rounds),
            "per_fault": per_fault,
            "overlaps": text.count("overlap "),
            "stale_rows": text.count("stale row "),
            "lost_readings": len(self.lost),
            "readings_verified": len(self.verified),
            "rows": len(self.rows()),
            "longest_act_after_last_grant_s": round(self.longest_act_after_grant, 2),
            "leases_lost_by_storage": self.count_lines(LOST_BY_STORAGE),
            "violations": violations,
        }


def render(report: dict) -> str:
    header = ("fault", "rounds", "failovers", "longest leaderless s", "longest recovery s",
              "longest takeover s", "stale writes refused", "readings buffered+flushed", "violations")
    keys = ("fault", "rounds", "failovers", "longest_leaderless_s", "longest_recovery_s", "longest_takeover_s",
            "stale_writes_refused", "readings_buffered_flushed", "violations")
    rows = [["-" if row[k] is None else str(row[k]) for k in keys] for row in report["per_fault"]]
    widths = [max(len(c) for c in column) for column in zip(header, *rows, strict=True)]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
             for r in (header, *rows)]
    s = report["settings"]
    lines.insert(1, "  ".join("-" * w for w in widths))
    lines += [
        "",
        f"{report['rounds']} rounds, {s['instances']} instances, seed {s['seed']}, lease {s['lease']} s, "
        f"renew {s['renew']:g} s, acquire {s['acquire']:g} s",
        f"overlaps: {report['overlaps']}   stale rows: {report['stale_rows']}   "
        f"lost readings: {report['lost_readings']} (of {report['readings_verified']} checked)   "
        f"rows: {report['rows']}",
        "recovery: from the fault's healing to a leader acting (bound LEASE_DURATION + ACQUIRE_INTERVAL + 3 s = "
        f"{s['lease'] + s['acquire'] + 3:g} s); takeover: from the fault itself to another instance acting",
        f"longest time a leader acted after its last granted acquire/renewal: "
        f"{report['longest_act_after_last_grant_s']} s (bound: the acting window, LEASE_DURATION - 2 s, "
        f"+ {SEND_SLACK} s from the deadline check to the request)",
        f"leases the storage lost (the next holder waited before acting): {report['leases_lost_by_storage']}",
        "PASS" if not report["violations"] else f"FAIL: {len(report['violations'])} violations",
        *report["violations"],
    ]
    return "\n".join(lines)


def run_chaos(settings: ChaosSettings, mysql: MySQLServer, workdir: Path,
              say: Callable[[str], None] = print) -> dict:
    with Chaos(settings, mysql, workdir, say) as chaos:
        chaos.run()
        report = chaos.report()
    (workdir / "chaos-report.json").write_text(json.dumps(report, indent=2))
    return report


def _containing(intervals: list[Interval], at: float, slack: float) -> Interval | None:
    return next((i for i in intervals if i.start <= at <= i.end + slack), None)


def _epoch(naive_utc) -> int:
    return int(naive_utc.replace(tzinfo=timezone.utc).timestamp())


def _hold_until(moment: float) -> None:
    """Keep a fault in place until ``moment`` (the fault's duration, not a synchronisation)."""
    time.sleep(max(0.0, moment - time.monotonic()))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make chaos", description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=21)
    parser.add_argument("--instances", type=int, default=3, choices=range(3, 6), metavar="3..5")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="work in DIR and keep it: each instance's output, the journal, Azurite's data")
    args = parser.parse_args(argv)
    settings = ChaosSettings(rounds=args.rounds, instances=args.instances, seed=args.seed)
    mysql = MySQLServer.from_environment()
    mysql.check()
    say = lambda line: print(line, flush=True)  # noqa: E731
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        report = run_chaos(settings, mysql, args.keep, say=say)
    else:
        with tempfile.TemporaryDirectory(prefix="chaos-") as workdir:
            report = run_chaos(settings, mysql, Path(workdir), say=say)
    print(render(report))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return 0 if not report["violations"] else 1


if __name__ == "__main__":
    sys.exit(main())
