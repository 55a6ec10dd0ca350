"""The demo's HTTP endpoints (METRICS_PORT): the election's metrics and health, from one small
server in a daemon thread.

    GET /metrics   Prometheus text format (OpenMetrics when asked; gzip when accepted)
    GET /healthz   200 or 503, with {"status", "role", "term", "seconds_since_renewal", "problems"}
"""

from __future__ import annotations

import errno
import json
import socket
import socketserver
import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import make_wsgi_app

from DistributedMutex.errors import ConfigurationError
from DistributedMutex.metrics import ElectionMetrics

if TYPE_CHECKING:  # typeshed's names for WSGI's callables; there is no such module at run time
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

# -- the HTTP server -----------------------------------------------------------------------------

class _Server(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True  # a slow scraper never keeps the process from exiting

    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the host's fully qualified name, which can hang for
        # seconds on a machine without DNS; the WSGI environ does not need it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)
        self.setup_environ()


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """No access log: one line per scrape would drown the demo's own lines."""


class MetricsServer:
    """/metrics and /healthz on host:port, served by a daemon thread; bound at construction, so
    a port in use is found at start."""

    def __init__(self, metrics: ElectionMetrics, host: str, port: int) -> None:
        self._metrics = metrics
        # (make_wsgi_app is annotated as returning a bare Callable.)
        self._prometheus: WSGIApplication = make_wsgi_app(metrics.registry)
        shown = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        except socket.gaierror:
            raise ConfigurationError("METRICS_HOST", f"{host!r} does not resolve to an address") from None
        family, _, _, _, address = infos[0]
        server_class = type("Server", (_Server,), {"address_family": family})
        try:
            self._server = server_class(address[:2], _QuietHandler)
        except OSError as exc:
            raise _bind_error(exc, host, port, shown) from None
        self._server.set_app(self._app)
        self.host, self.port = host, self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics-http", daemon=True)

    @property
    def address(self) -> str:
        """host:port as a URL would have it."""
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def all_interfaces(self) -> bool:
        return self.host in ("0.0.0.0", "::")

    def start(self) -> MetricsServer:
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()

    def _app(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path, method = environ.get("PATH_INFO", ""), environ.get("REQUEST_METHOD", "GET")
        if path == "/metrics":
            return self._prometheus(environ, start_response)
        if path != "/healthz":
            return _reply(start_response, "404 Not Found", b"not found: try /metrics or /healthz\n")
        if method != "GET":
            return _reply(start_response, "405 Method Not Allowed", b"use GET\n", [("Allow", "GET")])
        healthy, body = self._metrics.health()
        return _reply(start_response, "200 OK" if healthy else "503 Service Unavailable",
                      json.dumps(body).encode() + b"\n", [("Content-Type", "application/json")])


def _reply(start_response: StartResponse, status: str, body: bytes,
           headers: list[tuple[str, str]] | None = None) -> list[bytes]:
    headers = headers or [("Content-Type", "text/plain; charset=utf-8")]
    start_response(status, [*headers, ("Content-Length", str(len(body))), ("Cache-Control", "no-store")])
    return [body]


def _bind_error(exc: OSError, host: str, port: int, shown: str) -> ConfigurationError:
    if exc.errno == errno.EADDRINUSE:
        return ConfigurationError("METRICS_PORT", f"{shown} is already in use: choose another port, "
                                                  "or stop the program that listens there")
    if exc.errno == errno.EADDRNOTAVAIL:
        return ConfigurationError("METRICS_HOST", f"{host} is not an address of this machine: use 127.0.0.1, "
                                                  "the address of one of its interfaces, or 0.0.0.0 for all")
    if exc.errno == errno.EACCES:
        return ConfigurationError("METRICS_PORT", f"listening on port {port} needs privileges this process "
                                                  "does not have: use a port from 1024 up")
    return ConfigurationError("METRICS_PORT", f"cannot listen on {shown}: {exc.strerror or exc}")
