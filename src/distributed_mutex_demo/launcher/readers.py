"""What the demo reads from its instances into its state (state.py): their log lines (each
leader's last write, each worker's last read, every write the store refused as stale, a new
instance's first step), the leadership journal, and the summary printed at the end."""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path
from typing import Any

from distributed_mutex_demo.launcher.state import Action, DemoState, Instance, Refusal
from DistributedMutex.journal import read_journal as _read

_LOG_LINE = re.compile(r"^\d{4}-\d{2}-\d{2} ([\d:]+),\d+ ([A-Z]+) \[[^\]]+\] (.*)$")
_STORED = re.compile(r"stored (\d+) readings \((\d+) new\) as leader of term (\d+)")
_TABLE = re.compile(r"^newest readings at ([\d:]+) UTC(?:; current leader (\S+) \(term (\d+)\))?(: none stored yet)?")
_REFUSED = re.compile(r"write refused by the fencing check: (?:the store has term (\d+), this leader has term (\d+)"
                      r"|leadership of term (\d+) ended)")
_JOINED = re.compile(r"leader is |became leader|following ")
_write_times: dict[int, float] = {}  # pid -> time.monotonic() of its last write


def read_journal(path: Path) -> list[dict[str, Any]]:
    return _read(path)


def last_write_at(instance: Instance) -> float | None:
    return _write_times.get(instance.pid)


class OutputReader:
    """One instance's output, line by line: returns the text to log (None: not a log line)."""

    def __init__(self, state: DemoState, instance: Instance) -> None:
        self.state = state
        self.instance = instance
        self.rows: int | None = None  # counting the rows of a worker's table
        self.read_title = ""

    def line(self, line: str) -> str | None:
        match = _LOG_LINE.match(line)
        if match is None:
            self._table_line(line)
            return line if line.startswith("configuration error") else None
        text = match[3]
        with self.state.lock:
            if stored := _STORED.search(text):
                _write_times[self.instance.pid] = time.monotonic()
                self.instance.last_write = f"{match[1]}: {stored[1]} readings ({stored[2]} new), term {stored[3]}"
                self.state.changed()
            elif refused := _REFUSED.search(text):
                stored_term = int(refused[1]) if refused[1] else None
                term = int(refused[2] or refused[3])
                self.state.refusals.append(Refusal(self.instance.name, term, stored_term, self.state.now(), text))
                self.instance.last_write = f"{match[1]}: refused (term {term} is stale)"
                self.state.changed()
            if _JOINED.search(text):
                for action in self.state.actions:
                    if action.kind == "add" and action.target_pid == self.instance.pid and action.took is None:
                        action.took = round(self.state.now() - action.at, 2)
                        self.state.changed()
        return f"{match[1]} {match[2]:<7} {text}"

    def _table_line(self, line: str) -> None:
        """A worker's table: its title names the time, then one row per city up to a blank line."""
        if title := _TABLE.match(line):
            self.read_title = title[1] + (f", written by {title[2]} in term {title[3]}" if title[2] else "")
            if title[4]:
                self._set_read(f"{title[1]}: none stored yet")
                self.rows = None
            else:
                self.rows = -1  # the header comes first
        elif self.rows is not None and line.strip():
            self.rows += 1
        elif self.rows is not None:
            self._set_read(f"{self.read_title}: {self.rows} cities")
            self.rows = None

    def _set_read(self, text: str) -> None:
        with self.state.lock:
            self.instance.last_read = text
            self.state.changed()


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def render_summary(actions: list[Action], running_at_end: int) -> str:
    """The lines printed when the demo ends (tests/test_make_demo.py reads them)."""
    disruptions = [a for a in actions if a.kind != "add"]
    failovers = sum(d.took is not None for d in disruptions)
    lines = [f"{_count(len(disruptions), 'leader stop')}, {_count(failovers, 'failover')}, "
             f"{_count(running_at_end, 'instance')} running at the end"]
    if disruptions:
        lines.append("disruptions at " + ", ".join(f"{d.at:.1f} s ({d.kind}, {d.origin})" for d in disruptions))
    for d in disruptions:
        if d.took is None:
            lines.append(f"no failover measured after the {d.kind} of {d.target}: the demo ended first")
        else:
            lines.append(f"failover after the {d.kind} of {d.target}: {d.successor} led after {d.took:.1f} s")
    for kind in ("kill", "graceful stop", "pause", "cut off"):
        times = [d.took for d in disruptions if d.kind == kind and d.took is not None]
        if times:
            lines.append(f"failover time after a {kind}: median {statistics.median(times):.1f} s "
                         f"(min {min(times):.1f}, max {max(times):.1f}, {len(times)} measured)")
    return "\n".join(lines)

