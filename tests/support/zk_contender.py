"""A contender for the ZooKeeper backend's tests: DistributedMutex on ZooKeeperBackend, nothing else.

    INSTANCE_ID=a python tests/support/zk_contender.py HOSTS PATH SESSION_TIMEOUT

The leader task prints ``lead <term> <monotonic>`` when it starts and ``stop <term> <monotonic>``
when it ends (CLOCK_MONOTONIC: the test process reads the same clock), so the tests measure
handovers from the processes' own moments of acting. Logs go to stderr. The timing is the backend's
own (ZooKeeperBackend.default_timing(), from the session timeout). SIGTERM: stop leading, release,
close, exit 0.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "src"))

from DistributedMutex.backend import Identity
from DistributedMutex.backends.zookeeper.backend import ZooKeeperBackend
from DistributedMutex.mutex import DistributedMutex, RoleContext


def say(event: str, term: int | None) -> None:
    sys.stdout.write(f"{event} {term} {time.monotonic():.6f}\n")
    sys.stdout.flush()


async def lead(ctx: RoleContext) -> None:
    say("lead", ctx.term)
    try:
        await asyncio.Event().wait()  # acting until cancelled: the loop ends the role
    finally:
        say("stop", ctx.term)


def main() -> int:
    hosts, path, session_timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
    name = os.environ["INSTANCE_ID"]
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s %(levelname)s [{name}] %(name)s: %(message)s")
    backend = ZooKeeperBackend(hosts, path, session_timeout=session_timeout)
    try:
        DistributedMutex(lead, backend=backend, identity=Identity(name)).run()
    finally:
        backend.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
