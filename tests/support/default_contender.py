"""A contender built as the library's examples build one: every argument but the required ones
at its default (no timing, no identity), for tests/test_library_defaults.py.

    python tests/support/default_contender.py raft NODE_ID PEERS DATA_DIR   PEERS: a=127.0.0.1:7001,b=...
    python tests/support/default_contender.py zookeeper HOSTS
    python tests/support/default_contender.py azure CONNECTION_STRING CONTAINER BLOB
    python tests/support/default_contender.py redis URL

Prints ``lead <term> <pid> <monotonic>`` when its leader task starts and ``work <pid> <monotonic>``
when its worker task does (CLOCK_MONOTONIC: the test reads the same clock); logs go to stderr.
SIGTERM or SIGINT: stop, release, exit 0.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from DistributedMutex import DistributedMutex, ElectionBackend, RoleContext


def say(*words: object) -> None:
    sys.stdout.write(" ".join(str(word) for word in (*words, os.getpid(), f"{time.monotonic():.6f}")) + "\n")
    sys.stdout.flush()


def lead(ctx: RoleContext) -> None:
    say("lead", ctx.term)
    while ctx.sleep(0.1):  # acting until the role ends
        pass


def work(ctx: RoleContext) -> None:
    say("work")
    while ctx.sleep(0.1):
        pass


def backend_from(argv: list[str]) -> ElectionBackend:
    kind, *rest = argv
    if kind == "raft":
        from DistributedMutex import RaftBackend

        node_id, peers, data_dir = rest
        addresses = {}
        for entry in peers.split(","):
            peer, address = entry.split("=")
            host, port = address.rsplit(":", 1)
            addresses[peer] = (host, int(port))
        return RaftBackend(peers=addresses, node_id=node_id, data_dir=data_dir)
    if kind == "zookeeper":
        from DistributedMutex import ZooKeeperBackend

        (hosts,) = rest
        return ZooKeeperBackend(hosts)
    if kind == "azure":
        from DistributedMutex import AzureBlobLeaseBackend

        connection_string, container, blob = rest
        return AzureBlobLeaseBackend(connection_string, container, blob)
    if kind == "redis":
        from DistributedMutex import RedisLeaseBackend

        (url,) = rest
        return RedisLeaseBackend(url)
    raise SystemExit(f"unknown backend {kind!r}")


def main() -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    backend = backend_from(sys.argv[1:])
    try:
        if sys.argv[1] == "raft":
            DistributedMutex(lead, work, backend=backend).run()
        else:
            DistributedMutex(lead, backend=backend).run()
    finally:
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
