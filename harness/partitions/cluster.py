"""A cluster in network namespaces: the Network, the demo instances (each in its own namespace),
the weather stand-in on the bridge's address, the shared SQLite store and leadership journal, and
what is observed of them. The backends (backends.py) add their own services and settings."""

from __future__ import annotations

import sqlite3
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from DistributedMutex.timing import ElectionTiming
from harness.chaos.model import STALE_REFUSED, Interval, journal_intervals
from harness.fake_openweather import FakeOpenWeather
from harness.partitions.network import HOST, Network
from harness.processes import Instance, wait_until

START_TIMEOUT = 60.0  # s: interpreters (and JVMs) starting side by side on a busy 2-core machine


class Cluster:
    """Instances ``app-1..n`` (or the backend's names) plus the backend's ``service_names``, each in a
    namespace. Subclasses set ``backend``, ``bound`` and implement ``env``; they may start services
    in ``start_services``. Use as a context manager: everything is stopped and removed on exit."""

    backend = ""
    instance_prefix = "app"

    def __init__(self, workdir: Path, instances: int = 3) -> None:
        self.workdir = workdir
        self.names = [f"{self.instance_prefix}-{n}" for n in range(1, instances + 1)]
        self.network = Network([*self.names, *self.service_names()])
        self.journal = workdir / "leadership.jsonl"
        self.sqlite = workdir / "weather.sqlite3"
        self.weather: FakeOpenWeather | None = None
        self.instances: dict[str, Instance] = {}
        self.wall_offset = time.time() - time.monotonic()
        self.timing = ElectionTiming()  # the backend's: set by each subclass

    # -- what a backend says -------------------------------------------------------------------

    @property
    def bound(self) -> float:
        """Seconds: the longest time without an acting leader the backend's timing allows while a
        majority (of the instances and of its service) can talk."""
        raise NotImplementedError

    @property
    def takeover_bound(self) -> float:
        """Seconds from a cut to another instance acting: the cut-off leader's lease, granted just
        before the cut, runs out (the others cannot know sooner), then ``bound``."""
        return float(self.timing.lease_duration) + self.bound

    def service_names(self) -> list[str]:
        """The namespaces of the backend's storage/coordination service (none for raft)."""
        return []

    def peers(self, name: str) -> list[str]:
        """Whom the instance ``name`` must reach to keep leading: the other instances (raft) or
        the service's namespaces (zookeeper, azure)."""
        return self.service_names()

    def env(self, name: str) -> dict[str, str]:
        raise NotImplementedError

    def start_services(self) -> None:
        pass

    def stop_services(self) -> None:
        pass

    def minority(self, leader: str) -> list[str]:
        """The leader's side of a minority/majority split (the backend may add to it)."""
        return [leader]

    # -- set-up and tear-down ------------------------------------------------------------------

    def __enter__(self) -> Cluster:
        try:
            self.network.open()
            self.weather = FakeOpenWeather(host=self.network.host_address).start()
            self.start_services()
            for name in self.names:
                self.start(name)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self, name: str) -> Instance:
        self.instances[name] = Instance(name, self.base_env() | self.env(name), self.workdir,
                                        prefix=self.network.members[name].prefix)
        return self.instances[name]

    def base_env(self) -> dict[str, str]:
        assert self.weather is not None
        return {"SQLITE_PATH": str(self.sqlite), "LEADERSHIP_JOURNAL": str(self.journal),
                "OPENWEATHER_API_KEY": self.weather.api_key, "WEATHER_CITIES": "Hanoi",
                "FETCH_INTERVAL": "1", "READ_INTERVAL": "1", "LOG_LEVEL": "INFO",
                "ELECTION_BACKEND": self.backend}

    def weather_url(self, name: str) -> str:
        """The instance's own URL prefix: the server's log says who fetched, not the instance."""
        assert self.weather is not None
        return self.weather.url_for(name)

    def close(self) -> None:
        """Stop the instances, the services, the weather stand-in; remove the network. Each step
        runs even if one before it failed; the logs are kept in the work directory."""
        try:
            for instance in self.instances.values():
                instance.stop()
                (self.workdir / f"{instance.name}.log").write_text(instance.output + "\n")
        finally:
            try:
                self.stop_services()
            finally:
                try:
                    if self.weather is not None:
                        self.weather.stop()
                        self.weather = None
                finally:
                    self.network.close()

    # -- observing -----------------------------------------------------------------------------

    def intervals(self, now: float | None = None) -> list[Interval]:
        return journal_intervals(self.journal, time.monotonic() if now is None else now)

    def leader(self) -> str | None:
        current = [i for i in self.intervals() if i.open]
        return current[-1].instance if current else None

    def wait_for_leader(self, timeout: float, message: str, not_: str | None = None,
                        after: float = 0.0) -> str:
        """The instance acting as leader (other than ``not_``; started at or after ``after``); fails
        at once, with their last lines, when every instance has exited (e.g. refused its settings)."""
        def leading() -> str | None:
            if self.instances and len(self.dead()) == len(self.instances):
                raise AssertionError(f"{message}: every instance exited\n{self.describe()}")
            return next((i.instance for i in reversed(self.intervals())
                         if i.open and i.instance != not_ and i.start >= after), None)
        return wait_until(leading, timeout, message)

    def wait_for_stop(self, name: str, timeout: float) -> None:
        wait_until(lambda: not any(i.open and i.instance == name for i in self.intervals()), timeout,
             f"{name} did not record the end of its leadership")

    def others(self, name: str) -> list[str]:
        return [n for n in self.names if n != name]

    def everyone_but(self, names: list[str]) -> list[str]:
        return [n for n in [*self.names, *self.service_names(), HOST] if n not in names]

    def rows(self) -> list[tuple[int, str, datetime, str, int, datetime]]:
        """Every stored reading (id, city, observed_at, leader_id, term, stored_at) in insertion order."""
        if not self.sqlite.exists():
            return []
        try:
            with sqlite3.connect(f"file:{self.sqlite}?mode=ro", uri=True, timeout=5) as connection:
                rows = connection.execute("SELECT id, city, observed_at, leader_id, term, stored_at"
                                          " FROM weather ORDER BY id").fetchall()
        except sqlite3.OperationalError:  # before the first leader made the table
            return []
        return [(i, city, _utc(observed), leader, int(term), _utc(stored)) for i, city, observed, leader, term, stored
                in rows]

    def to_mono(self, stored_at: Any) -> float:
        return float(stored_at.replace(tzinfo=timezone.utc).timestamp()) - self.wall_offset

    def stale_refused(self) -> int:
        return sum(i.count(STALE_REFUSED.pattern) for i in self.instances.values())

    def tracebacks(self) -> list[str]:
        return [name for name, i in self.instances.items() if i.find(r"Traceback") is not None]

    def dead(self) -> list[str]:
        return [name for name, i in self.instances.items() if i.process.poll() is not None]

    def describe(self) -> str:
        """What every instance said about the election, for failure messages."""
        return "\n".join(f"--- {i.name}\n" + "\n".join(f"  {line.at:.3f} {line.text}" for line in i.lines[-30:])
                         for i in self.instances.values())


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text)
