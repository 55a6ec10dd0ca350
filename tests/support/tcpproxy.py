"""A TCP proxy the tests control, to cut an instance off from storage without touching the server.

    proxy = TcpProxy(upstream_port).start()
    proxy.blackhole()   # bytes vanish both ways: calls hang until their own timeouts
    proxy.heal()        # pass traffic again (connections cut meanwhile are closed)
"""

from __future__ import annotations

import socket
import threading


class TcpProxy:
    def __init__(self, upstream_port: int, upstream_host: str = "127.0.0.1") -> None:
        self._upstream = (upstream_host, upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._passing = threading.Event()
        self._passing.set()
        self._lock = threading.Lock()
        self._cut: list[socket.socket] = []
        self._open: list[tuple[socket.socket, socket.socket | None]] = []
        self._closed = False

    def start(self) -> TcpProxy:
        threading.Thread(target=self._accept_loop, daemon=True).start()
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

    def close(self) -> None:
        self._closed = True
        _close(self._listener)
        with self._lock:
            for client, upstream in self._open:
                _close(client)
                if upstream is not None:
                    _close(upstream)

    def _accept_loop(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if not self._passing.is_set():
                with self._lock:
                    self._open.append((client, None))
                    self._cut.append(client)
                threading.Thread(target=self._swallow, args=(client,), daemon=True).start()
                continue
            try:
                upstream = socket.create_connection(self._upstream, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _close(client)
                continue
            with self._lock:
                self._open.append((client, upstream))
            for source, target in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        while True:
            try:
                data = source.recv(65536)
            except OSError:
                data = b""
            if not data:
                _close(target)
                return
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
