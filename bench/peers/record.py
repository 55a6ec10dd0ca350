"""The leadership journal's lines, written the way DistributedMutex.journal writes them (one
O_APPEND write per JSON line, CLOCK_MONOTONIC in ``mono``), for the peer processes.

A peer must not import DistributedMutex: its memory and start-up would then include ours. So this
repeats the journal's format (a dozen lines) instead of importing it; the bench reads both with
DistributedMutex.journal.read_journal. ``ready`` lines go to a file of their own (PEER_READY): the
bench waits for them before a kill, the journal stays what the library writes."""

from __future__ import annotations

import json
import os
import threading
import time
from datetime import datetime, timezone
from typing import Any


class Lines:
    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        record.setdefault("mono", time.monotonic())
        record["pid"] = os.getpid()
        record["wall"] = datetime.fromtimestamp(time.time(), timezone.utc).isoformat()
        line = (json.dumps(record, sort_keys=True) + "\n").encode()
        with self._lock:
            os.write(self._fd, line)


class Journal:
    """``start`` when the process begins acting as leader, ``stop`` when it has stopped."""

    def __init__(self, path: str, instance: str) -> None:
        self._lines = Lines(path)
        self.instance = instance
        self.leading_since: float | None = None

    def started(self, term: int) -> None:
        self.leading_since = time.monotonic()
        self._lines.write({"event": "start", "instance": self.instance, "term": term, "mono": self.leading_since})

    def stopped(self, term: int, reason: str, acting_until: float | None = None) -> None:
        if self.leading_since is None:
            return
        self.leading_since = None
        now = time.monotonic()
        self._lines.write({"event": "stop", "instance": self.instance, "term": term, "mono": now,
                           "acting_until": min(now, acting_until if acting_until is not None else now),
                           "reason": reason})


def ready(path: str | None, instance: str, **detail: Any) -> None:
    """Say once that this process is in the cluster (the bench's readiness, not the journal)."""
    if path:
        Lines(path).write({"event": "ready", "instance": instance, **detail})
