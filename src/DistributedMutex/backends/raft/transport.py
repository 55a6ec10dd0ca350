"""TCP for Raft peers: newline-delimited JSON, one-way connections, losses tolerated.

Each peer listens on its own address (peers[node_id]) and reads messages from whoever
connects (listener.py, which holds every connection to its limits).

It sends through one outgoing connection per peer (``PeerLink``), fed by a bounded
queue: when the peer is unreachable the messages are dropped, not kept. Raft does not need them
(the next heartbeat or election timeout says the same again), and a queue that grew while a peer
was away would only deliver stale news when it comes back.

Anyone may also connect and send ``{"type": "status"}``: the answer (one JSON line) comes back on
the same connection. That is how ``--status`` asks a cluster it is not a member of.
"""

from __future__ import annotations

import json
import logging
import queue
import select
import socket
import threading
import time
from typing import Any

log = logging.getLogger(__name__)

MAX_LINE = 64 * 1024  # far above any message; a longer line is not from a peer
STATUS_REQUEST = b'{"type":"status"}\n'


class PeerLink:
    """The outgoing connection to one peer, written by its own thread."""

    def __init__(self, peer_id: str, address: tuple[str, int], *, connect_timeout: float,
                 retry_interval: float, queue_size: int = 256) -> None:
        self.peer_id = peer_id
        self.address = address
        self._connect_timeout = connect_timeout
        self._retry_interval = retry_interval
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=queue_size)  # None: stop
        self._sock: socket.socket | None = None
        self._retry_at = 0.0
        self._idle = threading.Condition()
        self._pending = 0  # queued or being written
        self._thread = threading.Thread(target=self._run, name=f"raft-link-{peer_id}", daemon=True)
        self._thread.start()

    def send(self, data: bytes) -> None:
        """Queue one encoded message; dropped at once if the queue is full."""
        with self._idle:
            self._pending += 1
        try:
            self._queue.put_nowait(data)
        except queue.Full:
            self._done()

    def flush(self, timeout: float) -> bool:
        """Wait until everything queued was written (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def close(self) -> None:
        try:
            self._queue.put_nowait(None)
        except queue.Full:
            pass  # the thread is busy writing: the closed socket below ends it
        sock, self._sock = self._sock, None
        if sock is not None:
            close_socket(sock)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                self._write(item)
            finally:
                self._done()

    def _done(self) -> None:
        with self._idle:
            self._pending -= 1
            if not self._pending:
                self._idle.notify_all()

    def _write(self, data: bytes) -> None:
        # A connection found dead gets one fresh one at once: a restarted peer or a healed
        # network should not cost the next message. A peer we cannot connect to costs nothing
        # but a drop until the retry interval has passed.
        for _ in range(2):
            sock = self._connected()
            if sock is None:
                break
            try:
                sock.sendall(data)
                return
            except OSError as exc:
                log.debug("raft: lost the connection to %s (%s)", self.peer_id, exc)
                self._drop_connection()

    def _connected(self) -> socket.socket | None:
        sock = self._sock
        if sock is not None and _peer_closed(sock):
            # The peer never writes on this connection: readable means it closed or restarted.
            self._drop_connection()
            sock = None
        if sock is not None:
            return sock
        if time.monotonic() < self._retry_at:
            return None
        try:
            sock = socket.create_connection(self.address, timeout=self._connect_timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError as exc:
            log.debug("raft: cannot reach %s at %s:%d (%s)", self.peer_id, *self.address, exc)
            self._retry_at = time.monotonic() + self._retry_interval
            return None
        self._sock = sock
        return sock

    def _drop_connection(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            close_socket(sock)


def query_status(address: tuple[str, int], timeout: float) -> dict[str, Any]:
    """Ask one peer for its status; OSError or ValueError if it does not answer properly in time."""
    deadline = time.monotonic() + timeout
    with socket.create_connection(address, timeout=timeout) as sock:
        sock.sendall(STATUS_REQUEST)
        answer = b""
        while not answer.endswith(b"\n"):
            sock.settimeout(max(0.01, deadline - time.monotonic()))
            chunk = sock.recv(MAX_LINE)
            if not chunk or len(answer) > MAX_LINE:
                raise ValueError("no complete answer")
            answer += chunk
    status = json.loads(answer)
    if not isinstance(status, dict):
        raise ValueError("the answer is not a JSON object")
    return status


def _peer_closed(sock: socket.socket) -> bool:
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    if not readable:
        return False
    try:
        return sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


def close_socket(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
