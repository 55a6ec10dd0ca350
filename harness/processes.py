"""Instances of the demo as real processes, with their output collected line by line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "src" / "DistributedMutex" / "test.py"


@dataclass(frozen=True)
class Line:
    at: float  # time.monotonic() when it was read
    stream: str  # "out" or "err"
    text: str


class Instance:
    """``python src/DistributedMutex/test.py`` (or ``script``) with the given settings, run from ``cwd``.

    ``prefix``: words run before the interpreter, e.g. ``("ip", "netns", "exec", NS)`` to run it in
    a network namespace (harness/partitions/); that command execs the interpreter, so the process
    signalled and waited for is still the instance itself."""

    def __init__(self, name: str, env: dict[str, str], cwd: Path, args: tuple[str, ...] = (),
                 script: Path = SCRIPT, prefix: tuple[str, ...] = ()) -> None:
        self.name = name
        self.lines: list[Line] = []
        self._changed = threading.Condition()
        full_env = self.clean_environment()
        full_env.update(env, PYTHONUNBUFFERED="1", INSTANCE_ID=name)
        self.process = subprocess.Popen(
            [*prefix, sys.executable, str(script), *args], env=full_env, cwd=cwd,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
        )
        self.started = time.monotonic()
        self._readers = [threading.Thread(target=self._read, args=(stream, label), daemon=True)
                         for stream, label in ((self.process.stdout, "out"), (self.process.stderr, "err"))]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def clean_environment() -> dict[str, str]:
        """This process's environment without our settings that the runner may have (they would
        reach the child and change what the test says)."""
        ours = ("MYSQL_", "AZURE_", "ZOOKEEPER_", "RAFT_", "POSTGRES_", "REDIS_", "ELECTION_BACKEND")
        return {k: v for k, v in os.environ.items() if not k.startswith(ours)}

    def _read(self, stream, label: str) -> None:
        for text in stream:
            with self._changed:
                self.lines.append(Line(time.monotonic(), label, text.rstrip("\n")))
                self._changed.notify_all()
        with self._changed:
            self._changed.notify_all()

    # -- reading the output ------------------------------------------------------------------

    def find(self, pattern: str, after: float = 0.0) -> Line | None:
        regex = re.compile(pattern)
        with self._changed:
            return next((line for line in self.lines if line.at >= after and regex.search(line.text)), None)

    def count(self, pattern: str) -> int:
        regex = re.compile(pattern)
        with self._changed:
            return sum(1 for line in self.lines if regex.search(line.text))

    def wait_for(self, pattern: str, timeout: float, after: float = 0.0) -> Line:
        """The first line matching ``pattern`` (read at or after ``after``), waiting up to ``timeout``."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        with self._changed:
            while True:
                for line in self.lines:
                    if line.at >= after and regex.search(line.text):
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0 or (self.process.poll() is not None and not self._reading()):
                    raise AssertionError(
                        f"{self.name}: no line matching {pattern!r} within {timeout:g} s "
                        f"(exit code {self.process.poll()}); last lines:\n{self.tail()}")
                self._changed.wait(min(remaining, 0.2))

    def _reading(self) -> bool:
        return any(reader.is_alive() for reader in self._readers)

    def tail(self, n: int = 25) -> str:
        return "\n".join(f"  [{line.stream}] {line.text}" for line in self.lines[-n:])

    @property
    def output(self) -> str:
        with self._changed:
            return "\n".join(line.text for line in self.lines)

    # -- controlling the process -------------------------------------------------------------

    def signal(self, signum: int) -> float:
        sent = time.monotonic()
        self.process.send_signal(signum)
        return sent

    def wait(self, timeout: float) -> int:
        code = self.process.wait(timeout)
        for reader in self._readers:
            reader.join(5)
        return code

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for reader in self._readers:
            reader.join(5)


def wait_until(predicate, timeout: float, message: str, interval: float = 0.05):
    """Poll ``predicate`` until it returns something truthy; fail with ``message`` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} (waited {timeout:g} s)")
        time.sleep(interval)
