"""What the in-process Raft tests share (tests/test_raft_node.py, tests/test_raft_driver.py):
short timeouts, addresses, and ways to hold or drain a peer's driver thread."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from DistributedMutex.backend import Identity, Lease
from DistributedMutex.backends.raft import RaftBackend
from DistributedMutex.backends.raft.messages import LeaderInfo
from DistributedMutex.backends.raft.node import NodeStatus, RaftNode
from harness.processes import wait_until
from harness.services import rebindable_port

TIMEOUT = (0.3, 0.6)
# For the tests that hold a leader's driver or its backend on purpose: a lease (lo) that outlasts
# the hold many times over, so that only the behaviour under test can end the leadership.
ROOMY = (0.6, 1.2)
STALL = 0.1  # the backend's call_timeout in those tests: how long it waits for a held driver
ME = Identity("instance-a", "host-a", 4242)
INFO = LeaderInfo("instance-a", "host-a", 4242)


def addresses(*names: str) -> dict[str, tuple[str, int]]:
    return {name: ("127.0.0.1", rebindable_port()) for name in names}


def lease_holder(backends: dict[str, RaftBackend], timeout: float = 5.0) -> tuple[str, Lease]:
    """Poll every backend's acquire until one returns a Lease."""
    def holder() -> tuple[str, Lease] | None:
        for name, backend in backends.items():
            result = backend.acquire(Identity(f"instance-{name}"), time.monotonic())
            if isinstance(result, Lease):
                return name, result
        return None
    return wait_until(holder, timeout, "no peer got a lease", interval=0.005)


@contextmanager
def stalled(node: RaftNode) -> Iterator[None]:
    """Hold the peer's driver thread in a call until the block ends: what a slow fsync, swapping
    or a long pause does to it. Everything sent to the peer meanwhile waits in its inbox."""
    inside, go_on = threading.Event(), threading.Event()

    def hold(core: Any, now: float) -> None:
        inside.set()
        go_on.wait(10)

    holder = threading.Thread(target=node.call, args=(hold, 15), name="stall")
    holder.start()
    assert inside.wait(5), "the driver never took the stalling call"
    try:
        yield
    finally:
        go_on.set()
        holder.join(5)


def drained(node: RaftNode) -> NodeStatus:
    """The status once the driver has dealt with everything queued so far (the inbox is FIFO)."""
    node.call(lambda core, now: None, timeout=5)
    return node.status


def outcome(fn: Callable[..., Any], *args: Any) -> Any:
    """What ``fn(*args)`` returned or raised."""
    try:
        return fn(*args)
    except Exception as exc:  # noqa: BLE001 - the test looks at it
        return exc
