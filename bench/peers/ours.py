"""Our contender for the real-peer comparison: the library alone (no demo, no weather, no database),
so that it does what the peers' scripts do and nothing more.

``DistributedMutex(lead, backend=...)`` with the backend's defaults, its own leadership journal
(PEER_JOURNAL: the library writes ``start`` when the leader task starts, ``stop`` when it has
stopped), and ``run()``, which stops and releases on SIGTERM. ELECTION_BACKEND=zookeeper takes
ZOOKEEPER_HOSTS, ZOOKEEPER_PATH and ZOOKEEPER_SESSION_TIMEOUT; ELECTION_BACKEND=raft takes
RAFT_PEERS_JSON ({id: [host, port]}), PEER_ID, RAFT_DATA_DIR and RAFT_ELECTION_TIMEOUT ("min-max" ms).
On Raft, readiness (PEER_READY) is the first leader this member hears of (the library's observer,
``leader_seen``); on ZooKeeper the bench counts the server's ephemeral znodes instead, so no observer
is installed there."""

from __future__ import annotations

import json
import os
import sys

from record import ready  # bench/peers/record.py: this script's directory is on the path

from DistributedMutex import DistributedMutex, Identity, RoleContext
from DistributedMutex.journal import LeadershipJournal
from DistributedMutex.observer import ElectionObserver


def lead(ctx: RoleContext) -> None:
    while ctx.sleep(3600):  # leading is all it does; False as soon as the leadership ends
        pass


class Ready(ElectionObserver):
    def __init__(self, path: str, instance: str) -> None:
        self.path, self.instance, self.said = path, instance, False

    def leader_seen(self, leader_id: str, term: int) -> None:
        if not self.said:
            self.said = True
            ready(self.path, self.instance, leader=leader_id, term=term)


def main() -> int:
    name = os.environ["PEER_ID"]
    observer: ElectionObserver | None = None
    if os.environ["ELECTION_BACKEND"] == "zookeeper":
        from DistributedMutex.backends.zookeeper import ZooKeeperBackend

        backend = ZooKeeperBackend(os.environ["ZOOKEEPER_HOSTS"], os.environ.get("ZOOKEEPER_PATH", "/election"),
                                   session_timeout=float(os.environ["ZOOKEEPER_SESSION_TIMEOUT"]))
    else:
        from DistributedMutex.backends.raft import RaftBackend

        peers = {k: (h, int(p)) for k, (h, p) in json.loads(os.environ["RAFT_PEERS_JSON"]).items()}
        low, high = (float(ms) / 1000 for ms in os.environ.get("RAFT_ELECTION_TIMEOUT", "1000-2000").split("-"))
        backend = RaftBackend(peers, name, os.environ["RAFT_DATA_DIR"], election_timeout=(low, high))
        if os.environ.get("PEER_READY"):
            observer = Ready(os.environ["PEER_READY"], name)
    journal = LeadershipJournal(os.environ["PEER_JOURNAL"])
    try:
        DistributedMutex(lead, backend=backend, identity=Identity(name), journal=journal, observer=observer).run()
    finally:
        backend.close()
        journal.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
