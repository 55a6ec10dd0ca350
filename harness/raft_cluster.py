"""A Raft cluster of demo processes (`python src/DistributedMutex/test.py`, ELECTION_BACKEND=raft)
on loopback, with a TCP proxy on every directed link: member A reaches member B through the proxy
A->B, so one member can be cut off from all the others, and every message can be counted.

Authenticated by default (``tls=True``): a throwaway CA per cluster, each member's certificate in
RAFT_TLS_CERT/RAFT_TLS_KEY/RAFT_TLS_CA, and proxies that terminate TLS on both sides so that
they still read the messages (harness.raft_tls).

Used by tests/test_raft_processes.py and by ``python -m harness.raft_measure``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from DistributedMutex.journal import read_journal
from harness.fake_openweather import FakeOpenWeather
from harness.processes import SCRIPT, Instance, wait_until
from harness.raft_tls import ClusterTls
from harness.services import rebindable_port
from harness.tcpproxy import TcpProxy

LO, HI = 1.0, 2.0  # RAFT_ELECTION_TIMEOUT=1000-2000, the default
START_TIMEOUT = 30  # interpreters starting side by side on a busy CI machine


class MessageCount:
    """A proxy watch: counts the lines (one line, one Raft message) going towards the peer."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.messages = 0
        self.bytes = 0

    def seen(self, connection: int, to_server: bool, data: bytes, at: float) -> None:
        if to_server:
            with self._lock:
                self.messages += data.count(b"\n")
                self.bytes += len(data)


class RaftProcesses:
    """One Raft cluster of demo instances, with a proxy on every directed link between members."""

    def __init__(self, workdir: Path, size: int, weather: FakeOpenWeather, *, tls: bool = True) -> None:
        self.workdir = workdir
        self.members = [f"node-{i}" for i in range(1, size + 1)]
        self.ports = {name: rebindable_port() for name in self.members}
        self.counts = MessageCount()
        self.tls = ClusterTls(workdir / "tls", self.members) if tls else None
        self.proxies = {(a, b): TcpProxy(self.ports[b], watch=self.counts,
                                         tls=self.tls.relay(a, b) if self.tls else None).start()
                        for a in self.members for b in self.members if a != b}
        self.journal_path = workdir / "leadership.jsonl"
        self.running: dict[str, Instance] = {}
        self.started: list[Instance] = []  # every process, in start order
        self.base = {"SQLITE_PATH": str(workdir / "weather.sqlite3"), "LEADERSHIP_JOURNAL": str(self.journal_path),
                     "OPENWEATHER_API_KEY": weather.api_key, "OPENWEATHER_URL": weather.url,
                     "WEATHER_CITIES": "Hanoi", "FETCH_INTERVAL": "1", "READ_INTERVAL": "0.5", "LOG_LEVEL": "INFO",
                     "ELECTION_BACKEND": "raft", "RAFT_DATA_DIR": str(workdir / "raft"),
                     "RAFT_ELECTION_TIMEOUT": f"{LO * 1000:g}-{HI * 1000:g}"}

    def env_for(self, name: str) -> dict[str, str]:
        """Its own real address, and every other member's through the proxy name -> other."""
        peers = ",".join(f"{peer}=127.0.0.1:{self.ports[peer] if peer == name else self.proxies[name, peer].port}"
                         for peer in self.members)
        return {**self.base, "RAFT_PEERS": peers, "RAFT_ID": name, **(self.tls.env(name) if self.tls else {})}

    def start(self, name: str) -> Instance:
        self.running[name] = Instance(name, self.env_for(name), self.workdir)
        self.started.append(self.running[name])
        return self.running[name]

    def isolate(self, name: str) -> float:
        """Blackhole every link to and from ``name``; returns when (CLOCK_MONOTONIC)."""
        for (a, b), proxy in self.proxies.items():
            if name in (a, b):
                proxy.blackhole()
        return time.monotonic()

    def heal(self) -> None:
        for proxy in self.proxies.values():
            proxy.heal()

    def journal(self) -> list[dict[str, Any]]:
        return read_journal(self.journal_path)

    def next_start(self, after: float, timeout: float) -> dict[str, Any]:
        """The first leadership that started after ``after``."""
        def started() -> dict[str, Any] | None:
            return next((e for e in self.journal() if e["event"] == "start" and e["mono"] > after), None)
        try:
            return wait_until(started, timeout, f"no leadership started after {after:.2f} in {self.journal_path}")
        except AssertionError as failure:  # what each member said is what tells why
            raise AssertionError(f"{failure}\n{self.describe()}") from None

    def stop_of(self, start: dict[str, Any], timeout: float) -> dict[str, Any]:
        def stopped() -> dict[str, Any] | None:
            return next((e for e in self.journal() if e["event"] == "stop" and e["pid"] == start["pid"]
                         and e["term"] == start["term"]), None)
        return wait_until(stopped, timeout, f"{start['instance']} never wrote the end of term {start['term']}")

    def status(self, name: str) -> dict[str, Any]:
        done = subprocess.run([sys.executable, str(SCRIPT), "--status"], cwd=self.workdir, capture_output=True,
                              text=True, env={**Instance.clean_environment(), **self.env_for(name)}, timeout=30)
        assert done.returncode == 0, f"--status exit {done.returncode}: {done.stdout} {done.stderr}"
        return json.loads(done.stdout.strip().splitlines()[-1])

    def describe(self) -> str:
        """What every process said about the election, for failure messages."""
        return "\n".join(f"--- {instance.name} (pid {instance.process.pid})\n" + "\n".join(
            f"  {line.at:.3f} {line.text}" for line in instance.lines if "leader" in line.text or "raft" in line.text)
            for instance in self.started)

    def close(self) -> None:
        for instance in self.running.values():
            instance.stop()
        for proxy in self.proxies.values():
            proxy.close()
