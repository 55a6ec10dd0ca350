"""Small measuring helpers: CPU and memory of a process from /proc, the whole machine's load, and
the summaries (percentiles, rounding) the results are written with."""

from __future__ import annotations

import math
import os
import statistics
import time
from pathlib import Path
from typing import Any


def cpu_ns(pid: int) -> int | None:
    """The process's time on a CPU so far, all its threads (ended ones included), in nanoseconds:
    its CPU-time clock (clock_getcpuclockid(3): ``(~pid << 3) | 2``, CPUCLOCK_SCHED), which is
    exact, where utime + stime in /proc/<pid>/stat is sampled at each clock tick: a process at 0.5 % of
    a core is on a CPU for some 15 of the 3000 ticks of a 30 s window, so the ticks vary by a
    quarter from one window to the next; this does not. None if the process is gone."""
    try:
        return time.clock_gettime_ns(((~pid) << 3) | 2)
    except OSError:
        return None


def cpu_pct(before: int, after: int, seconds: float) -> float:
    """% of one core between two ``cpu_ns`` readings."""
    return 100 * (after - before) / 1e9 / seconds


def wakes(pid: int) -> dict[int, int] | None:
    """Voluntary context switches of each of the process's threads (by thread id), from
    /proc/<pid>/task/*/status: how often each went to sleep and was woken. At rest, where a process
    only waits for timers and messages, this with its CPU says whether it wakes more often than
    another or does more each time (``woken_per_s``)."""
    counts: dict[int, int] = {}
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return None
    for task in tasks:
        try:
            status = (task / "status").read_text()
        except OSError:
            continue  # a thread that ended meanwhile
        for line in status.splitlines():
            if line.startswith("voluntary_ctxt_switches:"):
                counts[int(task.name)] = int(line.split()[1])
    return counts


def woken_per_s(before: dict[int, int], after: dict[int, int], seconds: float) -> float:
    """Wake-ups per second between two ``wakes`` readings, over the threads alive at the second
    (one started meanwhile counted from 0); a thread that ended in between is not counted."""
    return sum(n - before.get(tid, 0) for tid, n in after.items()) / seconds


def rss_mib(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def system_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]
    return sum(values) - idle, sum(values)


class LoadMeter:
    """The whole machine's CPU use over a stretch of time (everyone's, not just ours)."""

    def __init__(self) -> None:
        self.busy, self.total = system_busy()
        self.load_start = os.getloadavg()

    def read(self) -> dict[str, Any]:
        busy, total = system_busy()
        return {"machine_busy_pct": round(100 * (busy - self.busy) / max(1, total - self.total), 1),
                "loadavg_start": [round(x, 2) for x in self.load_start],
                "loadavg_end": [round(x, 2) for x in os.getloadavg()], "cpus": os.cpu_count()}


def percentile(values: list[float], p: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(values: list[float]) -> dict[str, Any]:
    if not values:
        return {"n": 0, "min": None, "median": None, "p95": None, "max": None}
    # To 0.1 ms: a graceful hand-over takes 2-5 ms, and a ratio of medians rounded to the
    # millisecond (3 ms / 2 ms = 1.5) says nothing.
    return {"n": len(values), "min": round(min(values), 4), "median": round(statistics.median(values), 4),
            "p95": round(percentile(values, 95), 4), "max": round(max(values), 4)}


def to_ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def rounded(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)
