"""Counting what crosses the wire, from outside the instances, for the benchmark's cost at rest.

``LineCounter`` is a TcpProxy watch (see harness.tcpproxy) for protocols of one JSON object per
line, such as the Raft peers' messages: it records every complete line that crossed the proxy, with
the time it was read and, when the line is a JSON object, its ``type``, ``src``, ``dst``, ``ok``.

``mntr`` asks a ZooKeeper test server (harness.services.ZooKeeperServer) for its counters and
parses the tab-separated lines.
"""

from __future__ import annotations

import json
import threading
from collections import defaultdict
from dataclasses import dataclass

from harness.services import ZooKeeperServer


@dataclass(frozen=True)
class WireLine:
    at: float  # time.monotonic() when the proxy read the chunk that ended the line
    to_server: bool  # from the connecting side to the listening side
    kind: str | None  # the JSON object's "type", None if the line was not a JSON object
    src: str | None = None
    dst: str | None = None
    ok: bool | None = None


class LineCounter:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.lines: list[WireLine] = []
        self._partial: dict[tuple[int, bool], bytes] = defaultdict(bytes)

    def seen(self, connection: int, to_server: bool, data: bytes, at: float) -> None:
        with self._lock:
            *complete, rest = (self._partial[connection, to_server] + data).split(b"\n")
            self._partial[connection, to_server] = rest[-65536:]
            for raw in complete:
                if raw.strip():
                    self.lines.append(_parse(raw, to_server, at))

    def between(self, start: float, end: float) -> list[WireLine]:
        with self._lock:
            return [line for line in self.lines if start <= line.at <= end]

    def since(self, start: float) -> list[WireLine]:
        with self._lock:
            return [line for line in self.lines if line.at >= start]


def _parse(raw: bytes, to_server: bool, at: float) -> WireLine:
    try:
        record = json.loads(raw)
    except ValueError:
        return WireLine(at, to_server, None)
    if not isinstance(record, dict):
        return WireLine(at, to_server, None)

    def text(name: str) -> str | None:
        value = record.get(name)
        return value if isinstance(value, str) else None

    ok = record.get("ok")
    return WireLine(at, to_server, text("type"), text("src"), text("dst"), ok if isinstance(ok, bool) else None)


def mntr(server: ZooKeeperServer) -> dict[str, str]:
    """``mntr``: {"zk_packets_received": "123", ...} (the fixture's servers enable the word)."""
    answer = server.command("mntr")
    values = dict(line.split("\t", 1) for line in answer.splitlines() if "\t" in line)
    if "zk_packets_received" not in values:
        raise RuntimeError(f"the ZooKeeper server on port {server.port} answered mntr without zk_packets_received: "
                           f"{answer[:200]!r}")
    return values
