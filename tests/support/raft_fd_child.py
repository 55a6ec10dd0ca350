"""A one-peer Raft node in a process whose file limit is low, for the fd-exhaustion test:

    python -m support.raft_fd_child DATA_DIR PORT LIMIT

Prints "ready", then obeys lines on stdin: "fill" opens /dev/null until the process is out of
file descriptors (prints "full N"), "release" closes them (prints "released"), "quit" stops."""

from __future__ import annotations

import logging
import os
import resource
import sys
from pathlib import Path

from DistributedMutex.backends.raft.messages import LeaderInfo
from DistributedMutex.backends.raft.node import RaftNode


def main() -> None:
    data_dir, port, limit = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(message)s")
    resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))
    node = RaftNode("a", {"a": ("127.0.0.1", port)}, Path(data_dir), (0.3, 0.6),
                    info=LeaderInfo("instance-a", "host-a", os.getpid()))
    node.start()
    print("ready", flush=True)
    held: list[int] = []
    for command in sys.stdin:
        if command.strip() == "fill":
            for _ in range(limit):  # bounded: there are no more than ``limit`` descriptors
                try:
                    held.append(os.open(os.devnull, os.O_RDONLY))
                except OSError:
                    break
            print(f"full {len(held)}", flush=True)
        elif command.strip() == "release":
            while held:
                os.close(held.pop())
            print("released", flush=True)
        else:
            break
    node.stop()


if __name__ == "__main__":
    main()
