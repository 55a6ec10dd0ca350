"""N ``distributed-mutex run`` processes around one fenced job, and what its log says.

    with Wrappers(tmp, {"ELECTION_BACKEND": "raft", ...}, names=("a", "b", "c")) as group:
        group.start_all()
        leader = group.wait_for_leader()          # the name whose command writes now
        group.kill(leader)                         # SIGKILL its wrapper only
        ...
        report = group.log.check()                # overlaps, stale writes accepted, orphans

The job (tests/support/fenced_job.py) appends ``pid term time accepted|refused leader`` every 100 ms
and writes under the library's Fence into SQLite, so that the log shows which command ran when,
and whether a write under an old term was ever accepted after a newer one.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JOB = ROOT / "tests" / "support" / "fenced_job.py"


@dataclass(frozen=True)
class Line:
    pid: int
    term: int
    at: float  # wall clock: the processes share the machine's
    accepted: bool
    leader: str


@dataclass(frozen=True)
class Run:
    """One command's run, from its lines."""

    pid: int
    leader: str
    term: int
    first: float
    last: float
    lines: int


class JobLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def lines(self) -> list[Line]:
        if not self.path.exists():
            return []
        lines = []
        for text in self.path.read_text().splitlines():
            parts = text.split()
            if len(parts) == 5:
                lines.append(Line(int(parts[0]), int(parts[1]), float(parts[2]), parts[3] == "accepted", parts[4]))
        return sorted(lines, key=lambda line: line.at)

    def runs(self) -> list[Run]:
        by_pid: dict[int, list[Line]] = {}
        for line in self.lines():
            by_pid.setdefault(line.pid, []).append(line)
        runs = [Run(pid, ls[0].leader, ls[0].term, ls[0].at, ls[-1].at, len(ls)) for pid, ls in by_pid.items()]
        return sorted(runs, key=lambda run: run.first)

    def overlaps(self) -> list[tuple[Run, Run]]:
        """Pairs of commands that wrote at overlapping times (there must be none)."""
        runs = self.runs()
        return [(a, b) for i, a in enumerate(runs) for b in runs[i + 1:] if b.first <= a.last]

    def stale_accepted(self) -> list[Line]:
        """Writes accepted under a term older than one accepted before them (there must be none)."""
        newest, stale = 0, []
        for line in self.lines():
            if not line.accepted:
                continue
            if line.term < newest:
                stale.append(line)
            newest = max(newest, line.term)
        return stale

    def last_of(self, leader: str) -> Run | None:
        runs = [run for run in self.runs() if run.leader == leader]
        return runs[-1] if runs else None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes: it runs nothing.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Wrappers:
    def __init__(self, workdir: Path, env: Mapping[str, str], names: Sequence[str] = ("a", "b", "c"),
                 per_name: Mapping[str, Mapping[str, str]] | None = None, args: Sequence[str] = ()) -> None:
        self.workdir = workdir
        self.env = dict(env)
        self.names = tuple(names)
        self.per_name = {name: dict((per_name or {}).get(name, {})) for name in self.names}
        self.args = tuple(args)
        self.log = JobLog(workdir / "job.log")
        self.database = workdir / "job.sqlite3"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, name: str) -> subprocess.Popen[bytes]:
        env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "INSTANCE_ID": name, "LOG_LEVEL": "INFO",
               **self.env, **self.per_name[name]}
        output = open(self.workdir / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        process = subprocess.Popen([sys.executable, "-m", "DistributedMutex.cli", "run", *self.args, "--",
                                    sys.executable, str(JOB), str(self.log.path), str(self.database)],
                                   env=env, stdout=output, stderr=subprocess.STDOUT, cwd=self.workdir)
        output.close()
        self.processes[name] = process
        return process

    def start_all(self) -> None:
        for name in self.names:
            self.start(name)

    def output(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def writing(self, since: float = 0.0) -> Run | None:
        """The command that wrote last, if it wrote after ``since`` (wall clock)."""
        runs = [run for run in self.log.runs() if run.last > since]
        return max(runs, key=lambda run: run.last) if runs else None

    def wait_for_writer(self, timeout: float, since: float = 0.0, other_than: str | None = None) -> Run:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.writing(since)
            if run is not None and run.leader != other_than and run.first > since and run.lines >= 2:
                return run
            time.sleep(0.05)
        raise AssertionError(f"no command wrote within {timeout:g} s (other than {other_than}); runs: "
                             f"{self.log.runs()}\n" + "\n".join(f"--- {n}\n{self.output(n)[-3000:]}"
                                                                  for n in self.names))

    def signal(self, name: str, signum: int) -> None:
        self.processes[name].send_signal(signum)

    def stop_all(self, timeout: float = 15.0) -> dict[str, int | None]:
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        codes: dict[str, int | None] = {}
        for name, process in self.processes.items():
            try:
                codes[name] = process.wait(timeout)
            except subprocess.TimeoutExpired:
                codes[name] = None
        return codes

    def __enter__(self) -> Wrappers:
        return self

    def __exit__(self, *exc: object) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()  # the guards see the control pipe close and stop the commands
                process.wait(5)
