"""An append-only record of leadership intervals: one JSON line when an instance starts acting as
leader, one when it has stopped. For audits ("who led when?"), and to check from the outside that
no two leaders ever acted at once: lines from every instance, put side by side with what the
leaders did (writes to a database, calls to a service), show any overlap.

    {"event": "start", "instance": "web-1", "pid": 4242, "term": 7, "mono": 812.41, "wall": "2026-..."}
    {"event": "stop", "instance": "web-1", "pid": 4242, "term": 7, "mono": 830.02,
     "acting_until": 825.4, "reason": "no renewal within 13 s of the last one (...)", "wall": "..."}

``mono`` is CLOCK_MONOTONIC, one clock for every process on a Linux machine, which never jumps:
lines written by several instances can be compared even when their wall clocks disagree.
``acting_until`` is when leader work really ended: the local deadline, if the instance noticed it
only later (a process frozen past its lease writes its stop line when it wakes, but did nothing
after its deadline: its work checks the deadline before each action).

Each line is one ``write`` on a descriptor opened with O_APPEND, so lines from several processes
sharing the file do not interleave, and a line written survives a SIGKILL right after it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class LeadershipJournal:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()
        self._broken = False

    def started(self, instance: str, term: int) -> None:
        self._write({"event": "start", "instance": instance, "term": term, "mono": time.monotonic()})

    def stopped(self, instance: str, term: int, acting_until: float, reason: str) -> None:
        now = time.monotonic()
        self._write({"event": "stop", "instance": instance, "term": term, "mono": now,
                     "acting_until": min(now, acting_until), "reason": reason})

    def close(self) -> None:
        with self._lock:
            if self._fd >= 0:
                os.close(self._fd)
                self._fd = -1

    def _write(self, record: dict[str, Any]) -> None:
        record["pid"] = os.getpid()
        record["wall"] = datetime.fromtimestamp(time.time(), timezone.utc).isoformat()
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        with self._lock:
            if self._fd < 0:
                return
            try:
                os.write(self._fd, line)
            except OSError as exc:
                # An audit trail that cannot be written must not stop the election; say so once.
                if not self._broken:
                    self._broken = True
                    log.error("cannot write the leadership journal %s: %s", self.path, exc)


def read_journal(path: str | Path) -> list[dict[str, Any]]:
    """Every complete line of a journal (a line being written at this moment is skipped)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    records = []
    for line in text.splitlines(keepends=True):
        if line.endswith("\n"):
            records.append(json.loads(line))
    return records
