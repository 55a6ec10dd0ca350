"""Reads the HTTP/1.1 traffic a TcpProxy passes and keeps a log of requests and their answers.

For the chaos harness: when an instance really sent a lease call, and whether storage really
answered it with success, seen on the wire rather than taken from the instance's own log.
Requests on one connection are answered in order (no pipelining in urllib3), so each status line
answers the oldest unanswered request of its connection.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict, deque
from dataclasses import dataclass

_REQUEST_LINE = re.compile(rb"(GET|PUT|HEAD|DELETE|POST) (\S+) HTTP/1\.1$")
_STATUS_LINE = re.compile(rb"HTTP/1\.1 (\d{3}) ")
_LEASE_ACTION = b"x-ms-lease-action:"


@dataclass
class Exchange:
    method: str
    path: str
    sent: float  # time.monotonic() when the request reached the proxy
    lease_action: str | None = None
    status: int | None = None
    answered: float | None = None

    @property
    def took_lease(self) -> bool:
        """An acquire or renewal that storage granted: the lease runs from (after) ``sent``."""
        return self.lease_action in ("acquire", "renew") and self.status is not None and 200 <= self.status < 300


class HttpWatch:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.exchanges: list[Exchange] = []
        self._unanswered: dict[int, deque[Exchange]] = defaultdict(deque)
        self._partial: dict[tuple[int, bool], bytes] = defaultdict(bytes)

    def seen(self, connection: int, to_server: bool, data: bytes, at: float) -> None:
        with self._lock:
            lines = (self._partial[connection, to_server] + data).split(b"\r\n")
            self._partial[connection, to_server] = lines.pop()[-4096:]  # bodies need not be kept
            for line in lines:
                if to_server:
                    self._request_line(connection, line, at)
                else:
                    self._response_line(connection, line, at)

    def _request_line(self, connection: int, line: bytes, at: float) -> None:
        match = _REQUEST_LINE.search(line)
        if match:
            exchange = Exchange(match[1].decode(), match[2].decode(errors="replace"), at)
            self.exchanges.append(exchange)
            self._unanswered[connection].append(exchange)
        elif line.lower().startswith(_LEASE_ACTION) and self._unanswered[connection]:
            action = line[len(_LEASE_ACTION):].strip().decode(errors="replace").lower()
            self._unanswered[connection][-1].lease_action = action

    def _response_line(self, connection: int, line: bytes, at: float) -> None:
        match = _STATUS_LINE.search(line)
        if match and self._unanswered[connection]:
            exchange = self._unanswered[connection].popleft()
            exchange.status, exchange.answered = int(match[1]), at

    def lease_grants(self, answered_by: float = float("inf")) -> list[float]:
        """When each granted acquire/renewal was sent, in order; only those whose answer had
        reached the instance by ``answered_by`` (an instance can act only on answers it has)."""
        with self._lock:
            return sorted(e.sent for e in self.exchanges
                          if e.took_lease and e.answered is not None and e.answered <= answered_by)
