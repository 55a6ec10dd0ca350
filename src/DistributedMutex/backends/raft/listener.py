"""This peer's server: one thread and a selector serve every incoming connection.

Whoever connects is a stranger until proven otherwise, so each connection is held to limits:

* with TLS (tls.py), the handshake runs in the selector loop within ``handshake_timeout``: the
  client must present a certificate of the cluster's CA (else ``tls_refused``) naming a listed peer
  id as subjectAltName=DNS:<id> (else ``unknown_certificate``), and then send only as that id (else
  ``wrong_sender``, the connection closed). Any such peer may ask for the status.
* a message is checked where it is read: its sender must be in the peer list (and not this node),
  its addressee this node; anything else closes the connection and is counted (``transport`` in
  the status reply, with the other counts below). Without TLS a forger can still claim a listed
  id: this only keeps out the rest.
* at most ``queue_quota`` of one connection's messages wait for the driver: a connection that
  has that many waiting is not read until the driver caught up (TCP pushes back on the sender),
  so one flooding connection cannot bury a peer's heartbeat or reply in the inbox, which holds at
  most ``max_connections * queue_quota`` messages;
* each ready connection gets one read per round: the selector serves them in turn;
* a cap on connections in all and per source address: at the cap, the connection that never
  sent a message (else the longest idle) is closed to make room, so idle sockets cannot lock the
  peers out (a peer's link reconnects by itself);
* a connection with no complete message for ``idle_timeout`` is closed (slow loris), and a
  status reply not taken within ``write_timeout`` closes its connection;
* running out of file descriptors (EMFILE, ENFILE) is logged once and accepting resumes after a
  back-off: the accept loop ends only with the node.

Malformed frames and refused messages are logged a few lines per interval, then counted.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import selectors
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection
from typing import Any

from DistributedMutex.backends.raft.connection import Connection, Handshake, tls_reason
from DistributedMutex.backends.raft.limits import ListenerLimits, LogLimiter, raise_fd_limit
from DistributedMutex.backends.raft.messages import Message, decode
from DistributedMutex.backends.raft.tls import TlsConfig, dns_names, peer_ids
from DistributedMutex.backends.raft.transport import MAX_LINE, is_status_request
from DistributedMutex.backends.raft.transport import close_socket as _close

log = logging.getLogger(__name__)

# Accept errors that mean "out of something for now": back off and try again.
_OUT_OF_RESOURCES = {errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM}

Deliver = Callable[[Message, Callable[[], None]], None]  # the message, and "the driver took it"


class Listener:
    """Each message read goes to ``deliver`` (with a callable the driver calls once it took it);
    a status request is answered with ``status()`` on the same connection."""

    def __init__(self, address: tuple[str, int], deliver: Deliver, status: Callable[[], dict[str, Any]], *,
                 node_id: str, peers: Collection[str], limits: ListenerLimits | None = None,
                 tls: TlsConfig | None = None) -> None:
        self._deliver = deliver
        self._status = status
        self._node_id = node_id
        self._peers = frozenset(peers)
        self._senders = self._peers - {node_id}
        self._tls = tls
        self._limits = limits or ListenerLimits()
        self._max_connections = raise_fd_limit(self._limits.max_connections)
        self._warn = LogLimiter(log, self._limits.log_interval, self._limits.log_burst)
        # How often the timeouts are checked: a quarter of the shortest, at most once a second (with
        # the defaults), so that an idle listener wakes once a second, not four times.
        self._sweep_every = min(1.0, min(self._limits.idle_timeout, self._limits.write_timeout,
                                         self._limits.handshake_timeout) / 4)
        self._accept_warn = LogLimiter(log, self._limits.log_interval, 1)
        self._lock = threading.Lock()  # counts, and the queued/paused fields the driver changes
        self._counts: Counter[str] = Counter()
        # OSError if the address is taken. A deep backlog: a burst of strangers must not make a
        # peer's connect time out before the selector gets round to accepting it.
        self._server = socket.create_server(address, backlog=1024)
        self._server.setblocking(False)
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._server, selectors.EVENT_READ, None)
        self._selector.register(self._wake_r, selectors.EVENT_READ, "wake")
        self._connections: dict[socket.socket, Connection] = {}
        self._resumed: list[Connection] = []  # un-paused by the driver, to be read again
        self._accept_paused_until = 0.0  # out of file descriptors: not accepting until then
        self._backoff = 0.0
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="raft-listener", daemon=True)
        self._thread.start()

    def counts(self) -> dict[str, int]:
        """What was refused or closed, by reason, since the start."""
        with self._lock:
            return dict(self._counts)

    @property
    def connections(self) -> int:
        return len(self._connections)

    def close(self) -> None:
        self._closed = True
        self._wake()
        self._thread.join(5)
        if self._thread.is_alive():  # cannot happen short of a bug; free the address anyway
            _close(self._server)

    # -- the serving thread ------------------------------------------------------------------

    def _serve(self) -> None:
        last_sweep = time.monotonic()
        try:
            while not self._closed:
                try:
                    last_sweep = self._round(last_sweep)
                except Exception:  # noqa: BLE001 - a bug must not end the listener while the node runs
                    self._warn.warning("listener failures", "raft: the listener failed a round; carrying on",
                                       exc_info=True)
                    time.sleep(0.05)  # not a hot loop if it fails again at once
        finally:
            for connection in list(self._connections.values()):
                self._drop(connection)
            self._selector.close()
            for sock in (self._server, self._wake_r, self._wake_w):
                _close(sock)

    def _round(self, last_sweep: float) -> float:
        """Serve what is ready; returns when the timeouts were last swept."""
        wait = last_sweep + self._sweep_every - time.monotonic()
        if self._accept_paused_until:
            wait = min(wait, self._accept_paused_until - time.monotonic())
        try:
            events = self._selector.select(max(0.0, wait))
        except InterruptedError:
            events = []
        for key, mask in events:
            if key.data is None:
                self._accept()
            elif key.data == "wake":
                self._woken()
            elif isinstance(key.data, Connection):
                self._serve_connection(key.data, mask)
        now = time.monotonic()
        if self._accept_paused_until and now >= self._accept_paused_until:
            self._resume_accepting()
        if now - last_sweep >= self._sweep_every:
            self._sweep(now)
            return now
        return last_sweep

    def _accept(self) -> None:
        for _ in range(64):  # a burst of connections must not hold up the reads
            try:
                sock, address = self._server.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_RESOURCES:
                    self._out_of_resources(exc)
                    return
                if exc.errno not in (errno.ECONNABORTED, errno.EPROTO, errno.EINTR):
                    self._count("accept_error")
                    self._warn.warning("accept errors", "raft: accepting a connection failed (%s)", exc)
                continue
            if self._backoff:
                log.info("raft: accepting connections again")
                self._backoff = 0.0
            self._admit(sock, address[0] if isinstance(address, tuple) else str(address))

    def _out_of_resources(self, exc: OSError) -> None:
        self._count("accept_error")
        if not self._backoff:  # once per episode, and one episode per interval at most
            self._accept_warn.warning("accept failures", "raft: cannot accept connections (%s); retrying with a "
                                      "back-off until it works", exc)
        self._backoff = min(1.0, max(0.05, self._backoff * 2))
        self._accept_paused_until = time.monotonic() + self._backoff
        self._selector.unregister(self._server)
        # Make room: the stranger that never sent anything is the first to go.
        victim = self._victim(self._connections.values())
        if victim is not None and not victim.spoke:
            self._count("evicted")
            self._drop(victim)

    def _resume_accepting(self) -> None:
        self._accept_paused_until = 0.0
        self._selector.register(self._server, selectors.EVENT_READ, None)

    def _admit(self, sock: socket.socket, source: str) -> None:
        connections = self._connections.values()
        same_source = [c for c in connections if c.source == source]
        crowd = (same_source if len(same_source) >= self._limits.max_per_source
                 else connections if len(self._connections) >= self._max_connections else None)
        if crowd is not None:
            victim = self._victim(crowd)
            if victim is not None:
                self._count("evicted")
                self._drop(victim)
        sock.setblocking(False)
        now = time.monotonic()
        if self._tls is not None:
            try:
                sock = self._tls.server.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
            except OSError:  # reset before we got to it
                _close(sock)
                return
        connection = Connection(sock, source, now, handshake_until=0.0 if self._tls is None
                                else now + self._limits.handshake_timeout)
        self._connections[sock] = connection
        self._selector.register(sock, selectors.EVENT_READ, connection)
        connection.events = selectors.EVENT_READ

    @staticmethod
    def _victim(crowd: Collection[Connection]) -> Connection | None:
        return min(crowd, key=lambda c: (c.spoke, c.last_message), default=None)

    def _serve_connection(self, connection: Connection, mask: int) -> None:
        if connection.sock not in self._connections:
            return  # dropped earlier in this round
        if connection.handshake_until:
            self._handshake(connection)
        elif mask & selectors.EVENT_WRITE:
            self._flush(connection)
        elif mask & selectors.EVENT_READ:
            self._read(connection)

    def _read(self, connection: Connection) -> None:
        data = connection.read()
        if data is None:
            return  # a partial TLS record (or nothing yet): the rest comes with a later event
        if not data:
            self._drop(connection)
            return
        connection.buffer += data
        self._handle_lines(connection)

    def _handshake(self, connection: Connection) -> None:
        """One step of a TLS handshake; once done, who the client is (its certificate's peer ids)."""
        try:
            step = connection.handshake()
        except OSError as exc:  # ssl.SSLError included: not TLS, or no certificate from our CA
            self._refuse(connection, "tls_refused", "raft: refused a connection from %s at the TLS handshake (%s)",
                         connection.source, tls_reason(exc))
            return
        if step is Handshake.DONE:
            certificate = connection.certificate()
            connection.ids = peer_ids(certificate, self._peers)
            if not connection.ids:
                self._refuse(connection, "unknown_certificate", "raft: refused a connection from %s: its "
                             "certificate names %s, no peer of %s", connection.source,
                             ", ".join(dns_names(certificate))[:200] or "no DNS name", self._node_id)
                return
        self._update_interest(connection)
        if step is Handshake.DONE and connection.has_pending():
            self._read(connection)

    def _handle_lines(self, connection: Connection) -> None:
        buffer = connection.buffer
        start = 0
        while not connection.paused and not connection.out:
            end = buffer.find(b"\n", start)
            if end < 0:
                break
            line = bytes(buffer[start:end + 1])
            start = end + 1
            if not self._handle(connection, line):
                self._drop(connection)
                return
        del buffer[:start]
        if len(buffer) - (buffer.rfind(b"\n") + 1) > MAX_LINE:  # the unfinished line alone
            self._refuse(connection, "malformed", "raft: dropping a connection from %s that sent a line over %d bytes",
                         connection.source, MAX_LINE)
        else:
            self._update_interest(connection)

    def _handle(self, connection: Connection, line: bytes) -> bool:
        """Handle one line; False to drop the connection (it does not speak our protocol)."""
        connection.spoke = True
        connection.last_message = time.monotonic()
        if b'"status"' in line and is_status_request(line):  # rare: parse twice only then
            connection.out += json.dumps({**self._status(), "transport": self.counts()}).encode() + b"\n"
            connection.out_since = connection.last_message
            return True
        try:
            message = decode(line)
        except ValueError as exc:
            return self._refused("malformed", "raft: dropping a connection from %s that sent a malformed message (%s)",
                                 connection.source, exc)
        except Exception as exc:  # noqa: BLE001 - decode must not raise these; a stranger must not kill us
            return self._refused("malformed", "raft: dropping a connection from %s whose message could not be "
                                 "decoded (%s)", connection.source, type(exc).__name__)
        if message.src not in self._senders:
            return self._refused("not_a_peer", "raft: dropping a connection from %s: a message from %r, "
                                 "not a peer of %s", connection.source, message.src[:64], self._node_id)
        if message.dst != self._node_id:
            return self._refused("not_for_me", "raft: dropping a connection from %s: a message for %r, not %s",
                                 connection.source, message.dst[:64], self._node_id)
        if connection.ids is not None and message.src not in connection.ids:
            return self._refused("wrong_sender", "raft: dropping a connection from %s: its certificate names %s, "
                                 "its message claims to come from %r", connection.source,
                                 ", ".join(sorted(connection.ids)), message.src)
        with self._lock:
            connection.queued += 1
            if connection.queued >= self._limits.queue_quota:
                connection.paused = True
                self._counts["paused"] += 1
        self._deliver(message, functools.partial(self._taken, connection))
        return True

    def _refused(self, kind: str, message: str, *args: object) -> bool:
        self._count(kind)
        self._warn.warning(kind.replace("_", " ") + " messages", message, *args)
        return False

    def _refuse(self, connection: Connection, kind: str, message: str, *args: object) -> None:
        self._refused(kind, message, *args)
        self._drop(connection)

    def _taken(self, connection: Connection) -> None:
        """Called by the driver as it takes one of this connection's messages."""
        with self._lock:
            connection.queued -= 1
            resume = connection.paused and connection.queued <= self._limits.queue_quota // 2
            if resume:
                connection.paused = False
        if resume:
            self._wake(connection)

    def _wake(self, connection: Connection | None = None) -> None:
        if connection is not None:
            with self._lock:
                self._resumed.append(connection)
        try:
            self._wake_w.send(b"x")
        except OSError:
            pass  # the pipe is full: the listener is awake already

    def _woken(self) -> None:
        try:
            while self._wake_r.recv(4096):
                pass
        except OSError:
            pass
        with self._lock:
            resumed, self._resumed = self._resumed, []
        for connection in resumed:
            if connection.sock in self._connections and not connection.paused:
                self._handle_lines(connection)  # what it sent while paused, then read it again

    def _update_interest(self, connection: Connection) -> None:
        """Read it unless paused or a reply waits to go out (then write only: a client that asks
        and never reads cannot make the reply grow)."""
        if connection.handshake_until:
            events = selectors.EVENT_WRITE if connection.want_write else selectors.EVENT_READ
        elif connection.out:
            events = selectors.EVENT_WRITE
        elif connection.paused:
            events = 0
        else:
            events = selectors.EVENT_READ
        registered = connection.events  # kept here: asking the selector costs more, at every message
        if events == registered:
            return
        if events == 0:
            self._selector.unregister(connection.sock)
        elif not registered:
            self._selector.register(connection.sock, events, connection)
        else:
            self._selector.modify(connection.sock, events, connection)
        connection.events = events

    def _flush(self, connection: Connection) -> None:
        if not connection.send_out():
            self._drop(connection)
            return
        if not connection.out:
            self._handle_lines(connection)  # what it sent meanwhile

    def _sweep(self, now: float) -> None:
        limits = self._limits
        for connection in list(self._connections.values()):
            if connection.handshake_until and now > connection.handshake_until:
                self._count("handshake_timeout")
                self._drop(connection)
            elif connection.out and now - connection.out_since > limits.write_timeout:
                self._count("write_timeout")
                self._drop(connection)
            elif not connection.paused and now - connection.last_message > limits.idle_timeout:
                self._count("idle_timeout")
                self._drop(connection)
        self._warn.flush()
        self._accept_warn.flush()

    def _drop(self, connection: Connection) -> None:
        if self._connections.pop(connection.sock, None) is None:
            return
        if connection.events:  # else paused: not registered
            connection.events = 0
            try:
                self._selector.unregister(connection.sock)
            except (KeyError, ValueError):
                pass
        _close(connection.sock)

    def _count(self, kind: str) -> None:
        with self._lock:
            self._counts[kind] += 1
