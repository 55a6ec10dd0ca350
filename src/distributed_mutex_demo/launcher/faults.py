"""The faults the demo puts in front of the viewer besides kill and stop: a pause of the leader
(SIGSTOP, SIGCONT after a chosen time) timed so that its late write is refused by the fencing
check, and an instance cut off from what it elects through (its storage or its peers) by the
chaos harness's TCP proxies (harness/tcpproxy.py).

Why the pause holds the database's write lock for a moment: a leader checks that it still leads
before each action, so a pause that lands while it sleeps between rounds ends quietly (it wakes,
finds its deadline passed, and steps down without writing). The fencing check exists for the pause
that lands *between* that check and the write. The demo makes that happen on purpose: it takes
the SQLite write lock just before the leader's next write is due, so the leader, past its check,
waits for the lock; then the demo freezes it and lets the lock go. A new leader registers its
term; the old one wakes, gets the lock, and the store refuses its write as stale. With MySQL
(MYSQL_HOST) the demo does not touch the database: the pause lands wherever it lands.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.tcpproxy import TcpProxy


def pause(pid: int, hold: float, *, store: Path | None, next_write: Callable[[], float | None],
          stopping: Callable[[], bool], frozen: Callable[[], None]) -> bool:
    """Freeze ``pid`` for ``hold`` seconds. With ``store`` (the demo's SQLite file) and a write
    expected (``next_write``: its time.monotonic(), or None), freeze it while that write waits for
    the lock. ``frozen`` is called as it freezes. Returns whether the freeze caught a write in flight."""
    due = next_write() if store is not None else None
    caught = False
    lock: sqlite3.Connection | None = None
    if due is not None and store is not None:
        # Up to one round ahead: wait until just before the write, take the lock, let the write queue.
        _sleep_until(due - 0.5, stopping)
        lock = sqlite3.connect(store, timeout=3, isolation_level=None)
        try:
            lock.execute("BEGIN IMMEDIATE")
            _sleep_until(time.monotonic() + 1.5, stopping)  # the leader's busy timeout is 5 s
            caught = True
        except sqlite3.Error:
            lock.close()
            lock = None
    try:
        _signal(pid, signal.SIGSTOP)
        frozen()
    finally:
        if lock is not None:
            with contextlib.suppress(sqlite3.Error):
                lock.execute("ROLLBACK")
            lock.close()
    try:
        _sleep_until(time.monotonic() + hold, stopping)
    finally:
        _signal(pid, signal.SIGCONT)
    return caught


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _sleep_until(at: float, stopping: Callable[[], bool]) -> None:
    while not stopping() and (left := at - time.monotonic()) > 0:
        time.sleep(min(left, 0.1))


class Cuts:
    """Proxies between each instance (Raft: each member slot) and what it talks to, to cut it off."""

    def __init__(self) -> None:
        self.by_slot: dict[str, list[TcpProxy]] = {}

    def add(self, slot: str, proxy: TcpProxy) -> TcpProxy:
        self.by_slot.setdefault(slot, []).append(proxy)
        return proxy

    def cut(self, slot: str, hold: float, stopping: Callable[[], bool]) -> None:
        proxies = self.by_slot.get(slot, [])
        for proxy in proxies:
            proxy.blackhole()
        try:
            _sleep_until(time.monotonic() + hold, stopping)
        finally:
            for proxy in proxies:
                proxy.heal()

    def close(self) -> None:
        for proxies in self.by_slot.values():
            for proxy in proxies:
                with contextlib.suppress(Exception):
                    proxy.close()
