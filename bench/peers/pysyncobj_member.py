"""A member of a 3-member PySyncObj cluster (pysyncobj.SyncObj), with PySyncObj's own leader
election and its own graceful handover, ``transferLeadership()`` (Raft's TimeoutNow).

Settings, from the environment: PSO_SELF (host:port), PSO_PARTNERS (the other two, comma-separated),
RAFT_ELECTION_TIMEOUT ("min-max" in ms, as our RAFT_ELECTION_TIMEOUT: PySyncObj's raftMinTimeout /
raftMaxTimeout), PSO_CONNECTION_TIMEOUT (seconds; unset: PySyncObj's default, 3.5 s), PSO_JOURNAL
(its journalFile: the term, the vote and the log survive a restart, as ours in RAFT_DATA_DIR).

Its first act as leader is the journal's ``start`` line, written from ``onStateChanged`` when the
state becomes LEADER (PySyncObj's only notice of it). On SIGTERM a leader writes ``stop`` (it has
stopped acting), asks ``transferLeadership()`` to hand over to the most caught-up connected
follower, waits (at most 2 s) until it is a follower, and exits. Readiness (PEER_READY): once a
replicated no-op sent after start has been applied, i.e. committed through a leader that this
member is connected to."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

from pysyncobj import SyncObj, SyncObjConf, replicated
from record import Journal, ready

LEADER = 2  # pysyncobj.syncobj._RAFT_STATE.LEADER


class Member(SyncObj):  # type: ignore[misc]
    def __init__(self, address: str, partners: list[str], conf: SyncObjConf) -> None:
        super().__init__(address, partners, conf)

    @replicated  # type: ignore[misc]
    def hello(self, name: str, pid: int) -> int:
        return pid


def main() -> int:
    name = os.environ["PEER_ID"]
    journal = Journal(os.environ["PEER_JOURNAL"], name)
    low, high = (float(ms) / 1000 for ms in os.environ.get("RAFT_ELECTION_TIMEOUT", "1000-2000").split("-"))
    stopping, follower = threading.Event(), threading.Event()
    member: Member | None = None

    def on_state(old: int, new: int) -> None:
        term = member.raftCurrentTerm if member is not None else 0
        if new == LEADER:
            follower.clear()
            if not stopping.is_set():
                journal.started(term)
        else:
            journal.stopped(term, f"state {old} -> {new}")
            follower.set()

    options: dict[str, Any] = {"raftMinTimeout": low, "raftMaxTimeout": high, "onStateChanged": on_state,
                               "dynamicMembershipChange": False}
    if os.environ.get("PSO_CONNECTION_TIMEOUT"):
        options["connectionTimeout"] = float(os.environ["PSO_CONNECTION_TIMEOUT"])
    if os.environ.get("PSO_JOURNAL"):
        options["journalFile"] = os.environ["PSO_JOURNAL"]
    partners = [p for p in os.environ["PSO_PARTNERS"].split(",") if p]
    member = Member(os.environ["PSO_SELF"], partners, SyncObjConf(**options))

    signal.signal(signal.SIGTERM, lambda signum, frame: stopping.set())
    signal.signal(signal.SIGINT, lambda signum, frame: stopping.set())

    # Ready once a command of ours went through a leader: this member is then in the cluster.
    deadline = time.monotonic() + 60
    while not stopping.is_set() and time.monotonic() < deadline:
        try:
            member.hello(name, os.getpid(), sync=True, timeout=2)
        except Exception:  # noqa: BLE001 - no leader yet, or it changed: ask again
            stopping.wait(0.1)
            continue
        ready(os.environ.get("PEER_READY"), name, term=member.raftCurrentTerm)
        break
    stopping.wait()
    if member._isLeader() and not follower.is_set():
        journal.stopped(member.raftCurrentTerm, "SIGTERM: handing over")
        member.transferLeadership()
        follower.wait(2)
    member.destroy()
    return 0


if __name__ == "__main__":
    sys.exit(main())
