"""The chaos harness's world: N instances of the demo (each in a slot with its own storage proxy
and wall-clock file), the election's server and the store (backends.py: Azurite on disk and MySQL
behind a proxy, a PostgreSQL cluster of its own, a redis-server of its own and MySQL), the weather
stand-in; the rounds of faults, and what is observed of them (the journal, the instances' output,
the rows)."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Callable
from datetime import timezone
from pathlib import Path

from DistributedMutex.timing import ElectionTiming
from harness.chaos.backends import ChaosBackend, chaos_backend
from harness.chaos.faults import ACTIONS
from harness.chaos.invariants import Judge
from harness.chaos.model import STALE_REFUSED, ChaosSettings, Interval, RoundResult, journal_intervals
from harness.fake_openweather import FakeOpenWeather
from harness.httpwatch import HttpWatch
from harness.processes import Instance
from harness.services import MySQLServer
from harness.tcpproxy import TcpProxy

# On the instances' PYTHONPATH: its sitecustomize lets the harness shift their wall clock.
CLOCKSHIFT = Path(__file__).resolve().parent / "clockshift"


class Slot:
    """One instance position: its storage proxy, its wall-clock file, and the process running in it
    (a killed instance is replaced by the next generation in the same slot)."""

    def __init__(self, name: str, upstream_port: int, workdir: Path, wire_log: bool = True) -> None:
        self.name = name
        # The HTTP wire log of the lease calls: Azure's only (the proxy relays any protocol).
        self.watch = HttpWatch() if wire_log else None
        self.proxy = TcpProxy(upstream_port, watch=self.watch).start()
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
    """The instances, the services they share, the rounds of faults, and what is observed."""

    def __init__(self, settings: ChaosSettings, mysql: MySQLServer, workdir: Path,
                 say: Callable[[str], None] = print) -> None:
        self.s = settings
        self.mysql = mysql
        self.workdir = workdir
        self.say = say
        self.journal = workdir / "leadership.jsonl"
        self.backend: ChaosBackend = chaos_backend(settings.backend, workdir, mysql)
        self.store = self.backend.store
        self.weather = FakeOpenWeather()
        self.slots: list[Slot] = []
        self.rounds: list[RoundResult] = []
        self.judge = Judge(self)
        self.wall_offset = time.time() - time.monotonic()  # the harness's own clock never jumps
        self.last_killed = 0  # connections the last conn-kill fault killed at the server

    # -- set-up and tear-down ----------------------------------------------------------------

    def __enter__(self) -> Chaos:
        self.backend.start()
        self.weather.start()
        self.slots = [Slot(f"i{n}", self.backend.upstream_port(), self.workdir, self.backend.wire_log)
                      for n in range(1, self.s.instances + 1)]
        for slot in self.slots:
            slot.start(self.env(slot), self.workdir)
        return self

    def __exit__(self, *exc: object) -> None:
        for slot in self.slots:
            if slot.instance is not None:
                slot.instance.stop()
            slot.proxy.close()
            for instance in slot.all_instances():
                (self.workdir / f"{instance.name}.log").write_text(instance.output + "\n")
        self.weather.stop()
        self.backend.stop()

    def env(self, slot: Slot) -> dict[str, str]:
        s = self.s
        timing = ElectionTiming(lease_duration=s.lease, renew_interval=s.renew, acquire_interval=s.acquire,
                                safety_margin=s.safety_margin)
        return {
            **self.backend.env(slot, timing),
            "OPENWEATHER_API_KEY": self.weather.api_key,
            "OPENWEATHER_URL": self.weather.url_for(slot.name),
            "WEATHER_CITIES": ",".join(s.cities),
            "FETCH_INTERVAL": str(s.fetch_interval),
            "READ_INTERVAL": "2",
            # A write may wait 5 s on the fencing row's lock while a frozen predecessor holds it.
            "LEADER_STALL_TIMEOUT": "12",
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
        self.last_killed = 0
        victim, fault_at, healed_at = ACTIONS[fault](self, leader)
        result = RoundResult(number, fault, victim, started, fault_at, healed_at)
        result.connections_killed = self.last_killed
        self.rounds.append(result)
        if fault == "conn-kill" and not self.last_killed:
            result.violations.append(f"conn-kill found no connection of {victim} at the server to kill")
        try:
            self.wait_for_steady(healed_at, self.s.recovery_bound + self.s.renew + 10,
                                 f"round {number} ({fault}): no leader renewing its lease afterwards")
            self.ensure_alive()
        except AssertionError as exc:
            result.violations.append(str(exc))
        result.ended = time.monotonic()
        result.stale_refused = self.count_lines(STALE_REFUSED) - refused_before
        self.judge.check(result)
        return result

    # -- observing ---------------------------------------------------------------------------

    def intervals(self, now: float | None = None) -> list[Interval]:
        """Leadership intervals from the journal; a killed instance's open one ends at its death."""
        deaths = {name: at for slot in self.slots for name, at in slot.deaths.items()}
        return journal_intervals(self.journal, time.monotonic() if now is None else now, deaths)

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
        round's fault has played out (a server restart can cost the lease only at the next
        renewal), so the next round starts from a settled state and is judged on its own.
        The storage's own evidence of the grant: backends.py."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                slot = self.wait_for_leader(max(0.0, deadline - time.monotonic()), message)
            except AssertionError:
                raise AssertionError(f"{message} (waited {timeout:g} s)") from None
            if self.backend.renewed_since(slot, self.current(slot).name, after):
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
        return self.store.rows()

    def to_mono(self, stored_at) -> float:
        return stored_at.replace(tzinfo=timezone.utc).timestamp() - self.wall_offset

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
