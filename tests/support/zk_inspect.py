"""Looking at an election's znodes as they are, with a plain kazoo client of the test's own
(tests/test_zookeeper_backend.py, tests/test_zookeeper_failover.py)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager

from kazoo.client import KazooClient


@contextmanager
def inspecting(hosts: str) -> Iterator[KazooClient]:
    client = KazooClient(hosts)
    client.start(timeout=10)
    try:
        yield client
    finally:
        client.stop()
        client.close()


def line_of(inspector: KazooClient, path: str) -> list[tuple[str, str]]:
    """(znode path, instance_id) of every contender, lowest first."""
    names = sorted(inspector.get_children(path), key=lambda name: int(name[-10:]))
    return [(f"{path}/{name}", json.loads(inspector.get(f"{path}/{name}")[0])["instance_id"]) for name in names]
