"""The ElectionBackend contract (DistributedMutex.testing.contract) on MemoryBackend: no service."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from DistributedMutex.backend import ElectionBackend
from DistributedMutex.testing import MemoryBackend, MemoryStore
from DistributedMutex.testing.contract import BackendContract


class TestMemoryBackend(BackendContract):
    handover_within = 0.2  # a release hands the lease over at once

    @pytest.fixture
    def make_backend(self) -> Iterator[Callable[[], ElectionBackend]]:
        store = MemoryStore()
        made: list[MemoryBackend] = []

        def make() -> ElectionBackend:
            made.append(MemoryBackend(store))
            return made[-1]

        yield make
        for backend in made:
            backend.close()


class TestMemoryBackendThatOnlyPolls(TestMemoryBackend):
    """Without notifications (as the blob lease): the contract does not rely on them."""

    @pytest.fixture
    def make_backend(self) -> Iterator[Callable[[], ElectionBackend]]:
        store = MemoryStore(notify=False, lease_duration=5.0)
        yield lambda: MemoryBackend(store)
