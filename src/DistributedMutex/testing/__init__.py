"""A testing kit: test code that uses DistributedMutex with no service, in seconds.

    MemoryStore, MemoryBackend   an election in process memory: contenders in one process compete
                                 as processes would; switches for outages, slow calls, a broken
                                 lease, a paused contender (memory.py)
    VirtualClock                 an event loop whose time jumps to the next deadline whenever
                                 everything waits: leases, renewals and deadlines at CPU speed
                                 (clock.py)
    running, wait_until          run elections as tasks for a block; wait for a condition,
                                 bounded (harness.py)
    contract.BackendContract     the ElectionBackend contract, as tests a backend of your own can
                                 run against itself (imported on its own: ``from
                                 DistributedMutex.testing.contract import BackendContract``)

Nothing here imports a third-party package. See docs/testing.md for a complete example.
"""

from __future__ import annotations

from DistributedMutex.testing.clock import VirtualClock, VirtualTimeLoop
from DistributedMutex.testing.harness import running, wait_until
from DistributedMutex.testing.memory import MemoryBackend, MemoryStore, StoreEvent

__all__ = ["MemoryBackend", "MemoryStore", "StoreEvent", "VirtualClock", "VirtualTimeLoop", "running", "wait_until"]
