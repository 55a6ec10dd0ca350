"""Prometheus metrics and a health check for the demo (METRICS_PORT), on prometheus_client.

``ElectionMetrics`` is an ElectionObserver (observer.py) that keeps Prometheus metrics and the
state /healthz judges; ``MetricsServer`` serves both from one small HTTP server in a daemon thread:

    GET /metrics   Prometheus text format (OpenMetrics when asked; gzip when accepted)
    GET /healthz   200 or 503, with {"status", "role", "term", "seconds_since_renewal", "problems"}

Only the demo imports this module: the library (mutex.py) knows the observer interface, not
prometheus_client.

Labels hold fixed words only (operation, outcome, reason), never an error text, a URL or a
setting's value, so no secret can reach a label and the number of series stays bounded. The
instance is not a label of every metric: Prometheus adds its own ``instance`` label (the scraped
host:port), and the default INSTANCE_ID contains the pid, which would start new series on every
restart. ``leader_election_instance_info{instance_id=...}`` carries it once, to join on.
"""

from __future__ import annotations

import asyncio
import errno
import json
import socket
import socketserver
import threading
import time
from collections.abc import Callable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    make_wsgi_app,
)

from .errors import ConfigurationError
from .observer import OPERATIONS, OUTCOMES, RENEWAL_FAILURES, STEP_DOWN_CAUSES, ElectionObserver

# Lease calls have 3 s socket timeouts: fine steps below a second for the healthy case, and bounds
# at 2, 3 and 3.5 s to tell "slow" from "ran into the timeout"; an acquire makes up to three
# requests (create the blob, acquire, write the term), hence 6 and 10.
LEASE_CALL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 3.0, 3.5, 6.0, 10.0)
# The election loop is stamped every LOOP_TICK s; /healthz fails when it has not been for
# LOOP_STALL_LIMIT s: a task that blocks the event loop keeps it from renewing and from stepping down.
LOOP_TICK = 0.5
LOOP_STALL_LIMIT = 5.0


class ElectionMetrics(ElectionObserver):
    """The election's metrics and health, fed by DistributedMutex (observer=) and the weather app."""

    def __init__(self, instance_id: str, backend: str, registry: CollectorRegistry | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        # A registry of our own (not prometheus_client's global one): two instances in one process
        # (the tests) do not collide, and only what is named here is served.
        self.registry = registry if registry is not None else CollectorRegistry()
        for collector in (ProcessCollector, PlatformCollector, GCCollector):
            collector(registry=self.registry)
        self._clock = clock
        r = self.registry
        Info("leader_election_instance", "This instance's INSTANCE_ID and lease backend",
             registry=r).info({"instance_id": instance_id, "backend": backend})
        self.is_leader = Gauge("leader_election_is_leader", "1 while this instance acts as leader, else 0",
                               registry=r)
        self.term = Gauge("leader_election_term", "The term this instance leads in, or the latest term "
                          "it saw another instance lead in (0: none seen yet)", registry=r)
        self.transitions = Counter("leader_election_transitions", "Leadership changes of this instance: "
                                   "direction acquired or lost; reason (lost only) shutdown, lease_lost, "
                                   "deadline, task_failed, stalled or other", ["direction", "reason"], registry=r)
        self.lease_call_seconds = Histogram("leader_election_lease_call_duration_seconds",
                                            "Duration of lease storage calls (acquire, renew, release)",
                                            ["operation"], buckets=LEASE_CALL_BUCKETS, registry=r)
        self.lease_calls = Counter("leader_election_lease_calls", "Lease storage calls by operation and "
                                   "outcome (ok, held, lost, unavailable, rejected, error)",
                                   ["operation", "outcome"], registry=r)
        self.renewal_failures = Counter("leader_election_renewal_failures", "Renewals that did not succeed, "
                                        "by reason (timeout, lost, unavailable, rejected, error)", ["reason"],
                                        registry=r)
        self.rows_written = Counter("weather_rows_written", "Weather readings the leader stored as new rows",
                                    registry=r)
        # Every series that can appear exists from the start (at 0), so that rate() and absent()
        # work before the first event.
        self.transitions.labels("acquired", "")
        for cause in STEP_DOWN_CAUSES:
            self.transitions.labels("lost", cause)
        for operation in OPERATIONS:
            self.lease_call_seconds.labels(operation)
        for cause in RENEWAL_FAILURES:
            self.renewal_failures.labels(cause)

        self._lock = threading.Lock()
        self._state = "starting"  # then "running", then "stopped"
        self._last_tick: float | None = None  # None: no event loop to watch
        self._tick_handle: asyncio.TimerHandle | None = None
        self._leading = False
        self._term: int | None = None
        self._lease_sent = 0.0  # our clock: when the last successful acquire/renew was sent
        self._lease_duration = 0.0

    # -- ElectionObserver ----------------------------------------------------------------------

    def election_started(self) -> None:
        with self._lock:
            self._state = "running"
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # called outside an event loop: nothing to watch
        self._tick(loop)

    def election_stopped(self) -> None:
        with self._lock:
            self._state = "stopped"
            handle, self._tick_handle = self._tick_handle, None
        if handle is not None:
            handle.cancel()

    def became_leader(self, term: int, lease_age: float, lease_duration: float) -> None:
        with self._lock:
            self._leading, self._term = True, term
            self._lease_sent, self._lease_duration = self._clock() - lease_age, lease_duration
        self.is_leader.set(1)
        self.term.set(term)
        self.transitions.labels("acquired", "").inc()

    def renewed(self, term: int, lease_age: float) -> None:
        with self._lock:
            self._lease_sent = self._clock() - lease_age

    def renewal_failed(self, cause: str) -> None:
        self.renewal_failures.labels(_known(cause, RENEWAL_FAILURES)).inc()

    def lost_leadership(self, term: int, cause: str) -> None:
        with self._lock:
            self._leading = False
        self.is_leader.set(0)
        self.transitions.labels("lost", _known(cause, STEP_DOWN_CAUSES)).inc()

    def term_advanced(self, term: int) -> None:
        with self._lock:
            self._term = term
        self.term.set(term)

    def leader_seen(self, leader_id: str, term: int) -> None:
        with self._lock:
            if self._leading:
                return
            self._term = term
        self.term.set(term)

    def lease_call(self, operation: str, seconds: float, outcome: str) -> None:
        if operation not in OPERATIONS:
            return
        self.lease_call_seconds.labels(operation).observe(seconds)
        self.lease_calls.labels(operation, _known(outcome, OUTCOMES)).inc()

    # -- the weather app -----------------------------------------------------------------------

    def stored(self, rows: int) -> None:
        """The leader stored ``rows`` new readings."""
        self.rows_written.inc(rows)

    # -- health --------------------------------------------------------------------------------

    def health(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, body): unhealthy when the election loop is not running or has stalled, or when
        this instance still acts as leader although its lease may have ended."""
        now = self._clock()
        with self._lock:
            state, last_tick, leading, term = self._state, self._last_tick, self._leading, self._term
            since_renewal = now - self._lease_sent if leading else None
            duration = self._lease_duration
        problems = []
        if state != "running":
            problems.append(f"the election loop has {'not started' if state == 'starting' else 'stopped'}")
        elif last_tick is not None and now - last_tick > LOOP_STALL_LIMIT:
            problems.append(f"the election loop has been blocked for {now - last_tick:.1f} s")
        if since_renewal is not None and since_renewal > duration:
            # The storage may have given the lease to another instance by now: two leaders.
            problems.append(f"acting as leader {since_renewal:.1f} s after the last successful renewal was "
                            f"sent, longer than the {duration:g} s lease")
        return not problems, {
            "status": "ok" if not problems else "unhealthy",
            "role": "leader" if leading else "worker",
            "term": term,
            "seconds_since_renewal": None if since_renewal is None else round(since_renewal, 3),
            "problems": problems,
        }

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            if self._state != "running":
                return
            self._last_tick = self._clock()
            self._tick_handle = loop.call_later(LOOP_TICK, self._tick, loop)


def _known(word: str, words: tuple[str, ...]) -> str:
    """A label value from a fixed set; anything else becomes its last word ("other", "error"),
    so that no free text ever becomes a label."""
    return word if word in words else words[-1]


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
        self._prometheus = make_wsgi_app(metrics.registry)
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

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
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


def _reply(start_response: Callable[..., Any], status: str, body: bytes,
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
