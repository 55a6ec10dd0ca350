"""TCP for Raft peers: newline-delimited JSON, one-way connections, losses tolerated.

Each peer listens on its own address (peers[node_id]) and reads messages from whoever
connects (listener.py, which holds every connection to its limits).

It sends through one outgoing connection per peer (``PeerLink``), fed by a bounded
queue: when the peer is unreachable the messages are dropped, not kept. Raft does not need them
(the next heartbeat or election timeout says the same again), and a queue that grew while a peer
was away would only deliver stale news when it comes back.

Anyone may also connect and send ``{"type": "status"}``: the answer (one JSON line) comes back on
the same connection. That is how ``--status`` asks a cluster it is not a member of.

With TLS (tls.py) every connection is mutual TLS: a link presents this peer's certificate and
talks only to a server whose certificate names the peer it dials; the status query does the same
(so asking needs a certificate from the cluster's CA: any peer's will do).
"""

from __future__ import annotations

import json
import logging
import queue
import socket
import ssl
import threading
import time
from typing import Any

from DistributedMutex.backends.raft.limits import LogLimiter
from DistributedMutex.backends.raft.tls import TlsConfig, dns_names, peer_ids

log = logging.getLogger(__name__)
_refusals = LogLimiter(log, 10.0, 3)  # a peer with a wrong certificate is dialled again and again

KEEP_CONNECTED = 1.0  # seconds between a link's checks that its idle connection is still up
MAX_LINE = 64 * 1024  # far above any message; a longer line is not from a peer
STATUS_REQUEST = b'{"type":"status"}\n'


class PeerLink:
    """The outgoing connection to one peer.

    A message goes out at once, from the sender's own thread (whichever holds the peer's core: the
    driver, the listener, or a caller), when the connection is up and nothing waits ahead of it:
    one non-blocking write of a line far smaller than the socket's buffer, no hand-over to another
    thread (each one costs a wake-up at every heartbeat, and milliseconds on a busy machine during a
    hand-over). Otherwise (not connected yet, found closed, a write that did not go through whole)
    it is queued for the link's own thread, which connects (a TCP connect and a TLS handshake may
    take a while: never on the sender's thread) and writes it. A write that does not go through
    whole means the peer is a whole socket buffer behind: that connection is dropped (the partial
    line dies with it) and the message goes out on a fresh one.

    The thread also keeps the connection up between messages: it connects at start, and checks
    every ``KEEP_CONNECTED`` seconds that it is still open, connecting again if not. Two followers
    send each other nothing while a leader lives, and the peer's listener closes a connection idle
    for a minute; without this, the first vote request of the next election and its answer would
    each wait for a connect (a few milliseconds, more on a busy machine) on the hand-over's path."""

    def __init__(self, peer_id: str, address: tuple[str, int], *, connect_timeout: float,
                 retry_interval: float, queue_size: int = 256, tls: TlsConfig | None = None) -> None:
        self.peer_id = peer_id
        self.address = address
        self._tls = tls
        self._connect_timeout = connect_timeout
        self._retry_interval = retry_interval
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=queue_size)  # None: stop
        self._sock: socket.socket | None = None  # non-blocking once connected
        self._retry_at = 0.0
        # The socket's writers take turns (lines must not interleave); _pending is guarded too.
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0  # queued for the thread or being written by it
        self._closing = False
        self._thread = threading.Thread(target=self._run, name=f"raft-link-{peer_id}", daemon=True)
        self._thread.start()

    def send(self, data: bytes, *, routine: bool = False) -> None:
        """Write one encoded message now if the connection is up, else queue it for the link's
        thread; dropped at once if that queue is full.

        ``routine``: a message said again every round (a heartbeat, its reply), whose loss costs
        nothing: written without first checking that the peer has not closed the connection (a
        system call, at every heartbeat, for each peer). If it has (it restarted), this one is lost
        in the dead connection, whose reset the next write or the link's own check then finds."""
        with self._lock:
            if not self._pending and self._sock is not None and self._write_now(data, check=not routine):
                return
            self._pending += 1  # from here on, later messages queue behind this one
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
        with self._lock:
            self._closing = True
            sock, self._sock = self._sock, None
        if sock is not None:
            close_socket(sock)

    def _run(self) -> None:
        self._connected()
        while True:
            try:
                item = self._queue.get(timeout=KEEP_CONNECTED)
            except queue.Empty:
                self._keep_connected()
                continue
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
            if not self._connected():
                return
            with self._lock:
                if self._sock is not None and self._write_now(data):
                    return

    def _keep_connected(self) -> None:
        """Idle: drop the connection if the peer closed it, and connect (again) if there is none."""
        with self._lock:
            sock = self._sock
            closed = None if sock is None else _closed(sock)
            if closed is not None:
                self._found_closed(closed)
        self._connected()

    def _write_now(self, data: bytes, *, check: bool = True) -> bool:
        """Write ``data`` whole on the open connection (the lock held); False if the connection
        was found closed (``check``) or failed (it is then dropped, and ``data`` not written)."""
        sock = self._sock
        assert sock is not None
        closed = _closed(sock) if check else None
        if closed is not None:
            self._found_closed(closed)
            return False
        try:
            sent = sock.send(data)
        except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            sent = 0
        except OSError as exc:
            log.debug("raft: lost the connection to %s (%s)", self.peer_id, exc)
            sent = -1
        if sent == len(data):
            return True
        if sent >= 0:
            log.debug("raft: the connection to %s takes no more (%d of %d bytes written): a fresh one",
                      self.peer_id, sent, len(data))
        self._drop_connection()
        return False

    def _found_closed(self, closed: str) -> None:
        """The peer never writes on this connection: readable means it closed or restarted."""
        self._drop_connection()
        if closed:
            # TLS 1.3: the server refuses our certificate only after our handshake is done, so
            # this is where we hear of it. Not again at once: it would only refuse again.
            _refusals.warning(f"refused by {self.peer_id}", "raft: %s at %s:%d refused this peer's certificate "
                              "(%s)", self.peer_id, *self.address, closed)
            self._retry_at = time.monotonic() + self._retry_interval

    def _connected(self) -> bool:
        """Whether a connection is up, making one (without the lock) if there is none."""
        if self._sock is not None:
            return True
        if time.monotonic() < self._retry_at:
            return False
        try:
            sock = connect(self.address, self._connect_timeout, self._tls, self.peer_id)
        except WrongPeerError as exc:
            _refusals.warning(f"wrong peer {self.peer_id}", "raft: not talking to %s at %s:%d: %s", self.peer_id,
                              *self.address, exc)
            self._retry_at = time.monotonic() + self._retry_interval
            return False
        except OSError as exc:
            if isinstance(exc, ssl.SSLCertVerificationError):
                _refusals.warning(f"wrong peer {self.peer_id}", "raft: not talking to %s at %s:%d: its certificate "
                                  "fails verification (%s)", self.peer_id, *self.address, exc.verify_message)
            else:
                log.debug("raft: cannot reach %s at %s:%d (%s)", self.peer_id, *self.address, exc)
            self._retry_at = time.monotonic() + self._retry_interval
            return False
        sock.setblocking(False)  # from now on a write never waits: see _write_now
        with self._lock:
            closing = self._closing
            if not closing:
                self._sock = sock
        if closing:  # closed meanwhile
            close_socket(sock)
        return not closing

    def _drop_connection(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            close_socket(sock)


class WrongPeerError(OSError):
    """The server's certificate is from the cluster's CA but does not name the peer we dialled."""


def connect(address: tuple[str, int], timeout: float, tls: TlsConfig | None, peer_id: str | None) -> socket.socket:
    """A connection to a peer, through mutual TLS if ``tls``: the server's certificate must then
    name ``peer_id`` (if given). OSError (ssl.SSLError, WrongPeerError included) otherwise."""
    sock = socket.create_connection(address, timeout=timeout)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is None:
            return sock
        # The handshake runs within the connect timeout (the socket's), and so does a stalled server.
        wrapped = tls.client.wrap_socket(sock, server_side=False)
    except BaseException:
        close_socket(sock)
        raise
    if peer_id is not None and peer_id not in peer_ids(wrapped.getpeercert(), [peer_id]):
        names = dns_names(wrapped.getpeercert())
        close_socket(wrapped)
        raise WrongPeerError(f"its certificate names {', '.join(names) or 'no DNS name'}, not {peer_id}")
    return wrapped


def query_status(address: tuple[str, int], timeout: float, *, tls: TlsConfig | None = None,
                 peer_id: str | None = None) -> dict[str, Any]:
    """Ask one peer for its status; OSError or ValueError if it does not answer properly in time.

    ``tls``: through mutual TLS with these files (the asker's certificate must be from the
    cluster's CA and name one of its peers); ``peer_id``: the id the answering peer's certificate
    must name."""
    deadline = time.monotonic() + timeout
    with connect(address, timeout, tls, peer_id) as sock:
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


def is_status_request(line: bytes) -> bool:
    """Whether a line a listener read is ``{"type": "status"}`` (STATUS_REQUEST, however spaced)."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return False
    return isinstance(record, dict) and record.get("type") == "status"


def _closed(sock: socket.socket) -> str | None:
    """None while the connection is open; "" once the peer closed it; a TLS alert's reason if the
    peer refused us (a certificate it does not accept). ``sock`` is non-blocking: one read that
    finds nothing is the common answer, at the cost of one system call."""
    try:
        if isinstance(sock, ssl.SSLSocket):
            # TLS records cannot be peeked at; the peer never writes application data, so whatever a
            # read brings is the end (close_notify, EOF, an alert) or a record that is not data.
            return "" if sock.recv(1) == b"" else None
        return "" if sock.recv(1, socket.MSG_PEEK) == b"" else None
    except (BlockingIOError, InterruptedError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
        return None
    except ssl.SSLError as exc:
        return str(exc.reason or exc).lower().replace("_", " ") if "ALERT" in str(exc.reason) else ""
    except (OSError, ValueError):
        return ""


def close_socket(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
