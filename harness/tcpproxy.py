"""A TCP proxy the tests control, to put faults between an instance and a server without touching
the server:

    proxy = TcpProxy(upstream_port).start()
    proxy.blackhole()     # bytes vanish both ways: calls hang until their own timeouts
    proxy.heal()          # pass traffic again (connections cut meanwhile are closed)
    proxy.latency = 2.5   # every chunk towards the server waits 2.5 s first
    proxy.down()          # nothing listens: connection refused, open connections reset
    proxy.up()            # listening again, on the same port

A ``watch`` (see harness.httpwatch) sees every chunk, both ways, with the time it was read: what
the instance really sent and what the server really answered, as evidence independent of the
instance's own logs.

``tls=TlsRelay(server, client)`` terminates TLS on both sides, so that the watch still reads the
plain protocol (the Raft links of harness.raft_cluster and the bench, which run mutual TLS): the
proxy presents ``server``'s certificate to whoever connects and dials upstream with ``client``'s.
A connection whose first byte is not a TLS handshake is relayed as plain TCP, as without ``tls``.
One thread serves both directions of a TLS connection: an SSL socket must not be read and
written by two threads at once.
"""

from __future__ import annotations

import itertools
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Protocol

TLS_HANDSHAKE = 0x16  # the first byte of a TLS record carrying a ClientHello


class Watch(Protocol):
    def seen(self, connection: int, to_server: bool, data: bytes, at: float) -> None: ...


@dataclass(frozen=True)
class TlsRelay:
    server: ssl.SSLContext  # presented to the connecting side (the upstream's own certificate)
    client: ssl.SSLContext  # presented upstream (the connecting side's own certificate)


class TcpProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1", watch: Watch | None = None,
                 tls: TlsRelay | None = None) -> None:
        self._upstream = (upstream_host, upstream_port)
        self.tls = tls
        self._listener: socket.socket | None = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.watch = watch
        self.latency = 0.0
        self._passing = threading.Event()
        self._passing.set()
        self._lock = threading.Lock()
        self._cut: list[socket.socket] = []
        self._open: list[tuple[socket.socket, socket.socket | None]] = []
        self._ids = itertools.count(1)
        self._closed = False

    def start(self) -> TcpProxy:
        assert self._listener is not None
        threading.Thread(target=self._accept_loop, args=(self._listener,), daemon=True).start()
        return self

    def blackhole(self) -> None:
        with self._lock:
            self._passing.clear()
            for client, upstream in self._open:
                self._cut.extend(s for s in (client, upstream) if s is not None)

    def heal(self) -> None:
        with self._lock:
            for sock in self._cut:
                _close(sock)
            self._cut.clear()
            self._passing.set()

    def down(self) -> None:
        """Like a server that stopped: new connections are refused, open ones are closed."""
        with self._lock:
            listener, self._listener = self._listener, None
            if listener is not None:
                _close(listener)
            self._close_open()

    def up(self) -> None:
        with self._lock:
            if self._listener is None:
                # create_server sets SO_REUSEADDR: the port is ours again at once.
                self._listener = socket.create_server(("127.0.0.1", self.port))
                threading.Thread(target=self._accept_loop, args=(self._listener,), daemon=True).start()

    def upstream_ports(self) -> list[int]:
        """The local ports of the open connections towards the server: what the server sees as
        this proxy's clients (pg_stat_activity.client_port, Redis CLIENT LIST's addr)."""
        ports = []
        with self._lock:
            for _, upstream in self._open:
                try:
                    if upstream is not None:
                        ports.append(upstream.getsockname()[1])
                except OSError:
                    continue  # closed meanwhile
        return ports

    def close(self) -> None:
        self._closed = True
        self.down()

    def _close_open(self) -> None:
        for client, upstream in self._open:
            _close(client)
            if upstream is not None:
                _close(upstream)
        self._open.clear()

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._closed:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            if not self._passing.is_set():
                with self._lock:
                    self._open.append((client, None))
                    self._cut.append(client)
                threading.Thread(target=self._swallow, args=(client,), daemon=True).start()
                continue
            if self.tls is not None:
                threading.Thread(target=self._sniff, args=(client, self.tls), daemon=True).start()
            else:
                self._relay_plain(client)

    def _relay_plain(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self._upstream, timeout=5)
            upstream.settimeout(None)
        except OSError:
            _close(client)
            return
        connection = next(self._ids)
        with self._lock:
            self._open.append((client, upstream))
        for source, target, to_server in ((client, upstream, True), (upstream, client, False)):
            threading.Thread(target=self._pump, args=(connection, source, target, to_server),
                             daemon=True).start()

    def _sniff(self, client: socket.socket, tls: TlsRelay) -> None:
        """TLS if the client starts with a handshake record, else plain."""
        try:
            client.settimeout(5)
            first = client.recv(1, socket.MSG_PEEK)
        except OSError:
            _close(client)
            return
        if not first or first[0] != TLS_HANDSHAKE:
            client.settimeout(None)
            self._relay_plain(client)
            return
        try:
            inside = tls.server.wrap_socket(client, server_side=True)
        except OSError:
            _close(client)
            return
        try:
            upstream = tls.client.wrap_socket(socket.create_connection(self._upstream, timeout=5))
        except OSError:
            _close(inside)
            return
        connection = next(self._ids)
        with self._lock:
            self._open.append((inside, upstream))
        self._pump_tls(connection, inside, upstream)

    def _pump_tls(self, connection: int, client: ssl.SSLSocket, upstream: ssl.SSLSocket) -> None:
        """Both directions in this one thread (see the module's docstring)."""
        sides = {client: (upstream, True), upstream: (client, False)}
        while True:
            # Decrypted bytes already in an SSL buffer make no select event: serve those first.
            ready = [s for s in sides if s.pending()]
            if not ready:
                try:
                    ready, _, _ = select.select(list(sides), [], [], 1.0)
                except (OSError, ValueError):
                    ready = [client]  # closed by blackhole/down: the recv below ends it
            for source in ready:
                target, to_server = sides[source]
                try:
                    data = source.recv(65536)
                except ssl.SSLWantReadError:
                    continue  # a record not complete yet
                except OSError:
                    data = b""
                if not data:
                    _close(client)
                    _close(upstream)
                    return
                if self.watch is not None:
                    self.watch.seen(connection, to_server, data, time.monotonic())
                if to_server and self.latency > 0:
                    time.sleep(self.latency)
                if not self._passing.is_set() or source in self._cut:
                    continue  # blackholed: read and drop
                try:
                    target.sendall(data)
                except OSError:
                    _close(client)
                    _close(upstream)
                    return

    def _pump(self, connection: int, source: socket.socket, target: socket.socket, to_server: bool) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                _close(target)
                return
            if self.watch is not None:
                self.watch.seen(connection, to_server, data, time.monotonic())
            if to_server and self.latency > 0:
                time.sleep(self.latency)  # this direction only: a request arrives late, once
            if not self._passing.is_set() or source in self._cut:
                continue  # blackholed: read and drop
            try:
                target.sendall(data)
            except OSError:
                _close(source)
                return

    @staticmethod
    def _swallow(client: socket.socket) -> None:
        while True:
            try:
                if not client.recv(65536):
                    return
            except OSError:
                return


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        sock.close()
    except OSError:
        pass
