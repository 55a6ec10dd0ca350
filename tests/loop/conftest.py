"""The election loop's fast unit tests: DistributedMutex on MemoryBackend, in virtual time (no
service, no real waiting). Each test gets a fresh virtual clock and a memory store on it."""

from __future__ import annotations

import pytest

from DistributedMutex.testing import MemoryStore, VirtualClock


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


@pytest.fixture
def store(clock: VirtualClock) -> MemoryStore:
    return MemoryStore(clock=clock)
