"""What ``make demo`` shows in the terminal: each instance's log lines under a coloured prefix, the
live panel (who leads, the lease's time left, each instance's last write, the last failover), the
keys read without Enter, and the summary printed at the end."""

from __future__ import annotations

import contextlib
import re
import select
import statistics
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distributed_mutex_demo.launcher.cluster import Disruption, Node

COLOURS = ("\033[36m", "\033[33m", "\033[35m", "\033[32m", "\033[34m", "\033[31m")
RESET, BOLD, DIM = "\033[0m", "\033[1m", "\033[2m"
PANEL_LOG_LINES = 14
KEYS_HELP = "keys: k kill the leader, s stop it gracefully, a add an instance, q quit"


def render_panel(elapsed: float, record: dict[str, Any] | None, lease_left: float | None,
                 nodes: Iterable[Node], disruptions: list[Disruption], log: Iterable[str], note: str = "") -> str:
    """The whole screen: the leader and its term, one row per instance, then the newest log lines.
    ``note``: what the header says about the election besides (a Raft cluster's transport)."""
    rows = [f"{BOLD}leader election demo{RESET}  {elapsed:5.0f} s   "
            f"leader: {BOLD}{record['instance'] if record else 'none'}{RESET}"
            f"  term {record['term'] if record else '-'}"
            f"  lease left {'-' if lease_left is None else f'{lease_left:4.1f} s'}"
            + (f"  {note}" if note else "")]
    for node in nodes:
        if not node.alive and time.monotonic() - node.started > 0 and node.process.returncode is not None:
            state = f"{DIM}exited ({node.process.returncode}){RESET}"
        elif record and record["instance"] == node.name:
            state = f"{BOLD}LEADER{RESET}"
        else:
            state = "worker"
        rows.append(f"  {node.colour}{node.name:<8}{RESET} {state:<20} last write {node.last_write}")
    done = [d for d in disruptions if d.took is not None]
    if done:
        last = done[-1]
        rows.append(f"  last failover: {last.kind} of {last.victim} -> {last.successor} in {last.took:.1f} s")
    rows.append(f"  {DIM}k kill leader   s stop leader   a add instance   q quit{RESET}")
    return "\033[H\033[2J" + "\n".join(rows) + "\n" + "-" * 72 + "\n" + "\n".join(log) + "\n"


def render_summary(disruptions: list[Disruption], running_at_end: int) -> str:
    """The lines printed when the demo ends (tests/test_make_demo.py reads them)."""
    lines = [f"{len(disruptions)} leader stops, {sum(d.took is not None for d in disruptions)} failovers,"
             f" {running_at_end} instances running at the end"]
    for d in disruptions:
        if d.took is None:
            lines.append(f"no failover measured after the {d.kind} of {d.victim}: the demo ended first")
        else:
            lines.append(f"failover after the {d.kind} of {d.victim}: {d.successor} led after {d.took:.1f} s")
    for kind in ("kill", "graceful stop"):
        times = [d.took for d in disruptions if d.kind == kind and d.took is not None]
        if times:
            lines.append(f"failover time after a {kind}: median {statistics.median(times):.1f} s "
                         f"(min {min(times):.1f}, max {max(times):.1f}, {len(times)} measured)")
    return "\n".join(lines)


# -- the instances' log lines --------------------------------------------------------------------

_LOG_LINE = re.compile(r"^\d{4}-\d{2}-\d{2} [\d:,]+ [A-Z]+ \[[^\]]+\] ")


def is_log_line(line: str) -> bool:
    return bool(_LOG_LINE.match(line)) or line.startswith("configuration error")


def strip_prefix(line: str) -> str:
    """'2026-11-26 12:00:00,123 INFO [node-1] text' -> '12:00:00 INFO text' (the prefix names it)."""
    match = re.match(r"^\d{4}-\d{2}-\d{2} ([\d:]+),\d+ ([A-Z]+) \[[^\]]+\] (.*)$", line)
    return f"{match[1]} {match[2]:<7} {match[3]}" if match else line


def plain(text: str) -> str:
    return re.sub(r"\033\[[0-9;]*[A-Za-z]", "", text)


# -- keys ----------------------------------------------------------------------------------------

class Keys:
    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def read(self, timeout: float) -> str | None:
        if not self.enabled:
            time.sleep(timeout)
            return None
        ready, _, _ = select.select([sys.stdin], [], [], timeout)
        return sys.stdin.read(1).lower() if ready else None


@contextlib.contextmanager
def keys(live: bool) -> Iterator[Keys]:
    """Single keys without Enter while the demo runs (when stdin is a terminal); restored after."""
    if not (live and sys.stdin.isatty()):
        yield Keys(False)
        return
    import termios
    import tty

    saved = termios.tcgetattr(sys.stdin)
    try:
        tty.setcbreak(sys.stdin.fileno())
        yield Keys(True)
    finally:
        termios.tcsetattr(sys.stdin, termios.TCSADRAIN, saved)
