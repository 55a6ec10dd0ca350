"""One member of a Raft cluster, as the issue writes it: ``RaftBackend(peers, node_id, data_dir)``
with every other argument (timing, identity) left at its default. When its leader task starts, it
appends ``<node_id> <term> <time.monotonic()>`` to a file the test reads.

    raft_member.py PEERS_JSON NODE_ID DATA_DIR STARTS_FILE
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from DistributedMutex import DistributedMutex, RaftBackend, RoleContext

peers_json, node_id, data_dir, starts_file = sys.argv[1:]
peers = {name: (host, int(port)) for name, (host, port) in json.loads(peers_json).items()}


def lead(ctx: RoleContext) -> None:
    # One short append: whole lines, whoever writes.
    with open(starts_file, "a", encoding="utf-8") as starts:
        starts.write(f"{node_id} {ctx.term} {time.monotonic()}\n")
    while ctx.sleep(1):
        pass


logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {node_id} %(name)s %(levelname)s %(message)s")
DistributedMutex(lead, backend=RaftBackend(peers, node_id, Path(data_dir))).run()
