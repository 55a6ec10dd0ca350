"""A contender of kazoo's own leader election recipe (kazoo.recipe.election.Election, a lock of
sequential ephemeral znodes), as its documentation shows it: ``zk.Election(path, id).run(lead)``.

Same server and same session timeout as our ZooKeeper backend (ZOOKEEPER_HOSTS, ZOOKEEPER_PATH,
ZOOKEEPER_SESSION_TIMEOUT). ``lead`` is called once the lock is ours: its first act is the journal's
``start`` line (PEER_JOURNAL); it then waits for SIGTERM, writes ``stop`` and returns, which deletes
its znode (kazoo releases the lock when ``lead`` returns) so the next contender's watch fires.
The term is the znode's sequence number: it only grows, as a term must."""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

from kazoo.client import KazooClient
from record import Journal


def main() -> int:
    name = os.environ["PEER_ID"]
    journal = Journal(os.environ["PEER_JOURNAL"], name)
    stopping = threading.Event()
    zk = KazooClient(hosts=os.environ["ZOOKEEPER_HOSTS"], timeout=float(os.environ["ZOOKEEPER_SESSION_TIMEOUT"]))
    zk.start(timeout=15)
    election = zk.Election(os.environ.get("ZOOKEEPER_PATH", "/election"), name)

    def on_signal(signum: int, frame: Any) -> None:
        stopping.set()
        election.cancel()  # a contender still waiting in line leaves it

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    def lead() -> None:
        node = election.lock.node or ""
        term = int(node[-10:]) if node[-10:].isdigit() else 0
        journal.started(term)
        stopping.wait()
        journal.stopped(term, "SIGTERM")

    if not stopping.is_set():
        election.run(lead)
    zk.stop()
    zk.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
