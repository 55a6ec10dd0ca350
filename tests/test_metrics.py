"""METRICS_PORT: /metrics and /healthz, scraped from real processes of the demo and, for the cases a
process cannot be driven into (an event loop blocked by its own leader task), from an in-process
DistributedMutex on real Azurite."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from distributed_mutex_demo.metrics_server import MetricsServer
from distributed_mutex_demo.weather_metrics import WeatherMetrics
from DistributedMutex import AzureBlobLeaseBackend, DistributedMutex, Identity, RoleContext
from DistributedMutex.metrics import LOOP_STALL_LIMIT, ElectionMetrics
from DistributedMutex.observer import ElectionObserver
from DistributedMutex.threads import blocking
from harness.processes import Instance, wait_until
from harness.services import AZURITE_KEY, connection_string, free_port
from harness.tcpproxy import TcpProxy
from test_demo_processes import LEADER, leader_term
from test_mutex import FAST, Running

# No proxy from the environment between the tests and 127.0.0.1.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def get(port: int, path: str) -> tuple[int, str, str]:
    """(status, content type, body) of GET http://127.0.0.1:port/path."""
    try:
        with _opener.open(f"http://127.0.0.1:{port}{path}", timeout=3) as response:
            return response.status, response.headers.get("Content-Type", ""), response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read().decode()


def scrape(port: int) -> Samples:
    status, content_type, text = get(port, "/metrics")
    assert status == 200 and content_type.startswith("text/plain"), (status, content_type)
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    key = (name, frozenset(labels.items()))
    assert key in samples, f"no sample {name}{labels}"
    return samples[key]


def healthz(port: int) -> tuple[int, dict[str, Any]]:
    status, content_type, body = get(port, "/healthz")
    assert content_type == "application/json", content_type
    return status, json.loads(body)


def health_when(port: int, wanted: Callable[[int, dict[str, Any]], bool], timeout: float,
                message: str) -> tuple[int, dict[str, Any]]:
    """The first /healthz answer (status, body) that is ``wanted``, polling up to ``timeout``."""
    return wait_until(lambda: (lambda answer: answer if wanted(*answer) else None)(healthz(port)), timeout, message)


def serving(port: int, instance: Instance | None = None) -> bool:
    """True once the endpoint answers (the process needs a moment to start)."""
    if instance is not None:
        assert instance.process.poll() is None, instance.tail()
    try:
        get(port, "/metrics")
    except OSError:
        return False
    return True


# -- real processes --------------------------------------------------------------------------------

def test_leader_and_worker_export_role_term_rows_and_timings_and_a_failover_moves_them(
        spawn, demo_env, mysql_server, database) -> None:
    env = dict(demo_env, ACQUIRE_INTERVAL="2")
    first_port, second_port = free_port(), free_port()
    first = spawn("m-first", dict(env, METRICS_PORT=str(first_port)))
    first.wait_for(LEADER, timeout=15)
    term = leader_term(first)
    second = spawn("m-second", dict(env, METRICS_PORT=str(second_port)))
    second.wait_for(rf"leader is m-first \(term {term}\)", timeout=10)
    first.wait_for(rf"metrics on http://127\.0\.0\.1:{first_port}/metrics", timeout=1)
    wait_until(lambda: serving(second_port, second), 5, "the worker's endpoint does not answer")

    leader = scrape(first_port)
    assert value(leader, "leader_election_is_leader") == 1
    assert value(leader, "leader_election_term") == term
    assert value(leader, "leader_election_transitions_total", direction="acquired", reason="") == 1
    assert value(leader, "leader_election_instance_info", instance_id="m-first", backend="azure") == 1
    assert value(leader, "leader_election_lease_call_duration_seconds_count", operation="acquire") >= 1
    assert value(leader, "leader_election_lease_calls_total", operation="acquire", outcome="ok") == 1
    worker = scrape(second_port)
    assert value(worker, "leader_election_is_leader") == 0
    assert value(worker, "leader_election_term") == term  # the last term it saw
    assert value(worker, "leader_election_transitions_total", direction="acquired", reason="") == 0
    assert value(worker, "leader_election_lease_calls_total", operation="acquire", outcome="held") >= 1
    assert value(worker, "weather_rows_written_total") == 0

    # Rows: the counter follows what the database holds (a write commits, then it is counted).
    first.wait_for(r"stored \d+ readings", timeout=10)
    before = value(scrape(first_port), "weather_rows_written_total")
    in_database = mysql_server.query(database, "SELECT COUNT(*) FROM weather WHERE leader_id = 'm-first'")[0][0]
    assert 0 < before <= in_database
    wait_until(lambda: value(scrape(first_port), "weather_rows_written_total") > max(before, in_database),
               10, "the rows counter does not grow")
    # Renewals every RENEW_INTERVAL (5 s) are timed too.
    wait_until(lambda: value(scrape(first_port), "leader_election_lease_call_duration_seconds_count",
                             operation="renew") >= 1, 8, "no renewal timed")
    leader = scrape(first_port)
    assert value(leader, "leader_election_lease_calls_total", operation="renew", outcome="ok") >= 1
    # A renewal against a local Azurite takes well under the 3 s timeout: in a bucket below it.
    assert value(leader, "leader_election_lease_call_duration_seconds_bucket", operation="renew", le="2.0") >= 1
    assert value(leader, "leader_election_renewal_failures_total", reason="unavailable") == 0
    status, body = healthz(first_port)
    assert status == 200, body
    assert body["role"] == "leader" and body["term"] == term and body["problems"] == []
    assert 0 <= body["seconds_since_renewal"] < 15
    status, body = healthz(second_port)
    assert (status, body["role"], body["term"], body["seconds_since_renewal"]) == (200, "worker", term, None)

    # SIGTERM: the leader hands over; the successor's metrics say so.
    first.signal(signal.SIGTERM)
    assert first.wait(5) == 0, first.tail()
    second.wait_for(LEADER, timeout=2 + 3)
    new_term = leader_term(second)
    assert new_term > term
    successor = scrape(second_port)
    assert value(successor, "leader_election_is_leader") == 1
    assert value(successor, "leader_election_term") == new_term
    assert value(successor, "leader_election_transitions_total", direction="acquired", reason="") == 1
    assert sum(v for (name, labels), v in successor.items()
               if name == "leader_election_transitions_total" and ("direction", "lost") in labels) == 0
    status, body = healthz(second_port)
    assert (status, body["role"], body["term"]) == (200, "leader", new_term)

    # Nothing secret in what the endpoint serves, nor an unbounded label.
    _, _, text = get(second_port, "/metrics")
    for secret in (AZURITE_KEY, demo_env["AZURE_STORAGE_CONNECTION_STRING"], demo_env["OPENWEATHER_API_KEY"]):
        assert secret not in text
    assert get(second_port, "/other")[0] == 404
    assert "Traceback" not in first.output + second.output


def test_a_leader_cut_off_from_storage_steps_down_and_says_why(spawn, demo_env, azurite) -> None:
    proxy = TcpProxy(azurite.port).start()
    port = free_port()
    env = dict(demo_env, AZURE_STORAGE_CONNECTION_STRING=connection_string(proxy.port), METRICS_PORT=str(port))
    leader = spawn("m-cut", env)
    leader.wait_for(LEADER, timeout=15)
    term = leader_term(leader)
    assert healthz(port)[0] == 200

    proxy.blackhole()
    # Renewals fail, but within its lease the leader is healthy: it acts, and it is still safe to.
    status, body = health_when(port, lambda _, body: (body["seconds_since_renewal"] or 0) > 5 + 1, 10,
                               "no renewal missed")
    assert (status, body["role"], body["problems"]) == (200, "leader", []), body
    # At its deadline (lease - 2 s after the last renewal sent) it steps down: a worker, healthy,
    # since it did what it must; the storage outage shows in the metrics instead.
    wait_until(lambda: value(scrape(port), "leader_election_is_leader") == 0, 15, "it never stepped down")
    leader.wait_for(r"lost leadership: no renewal within 13 s", timeout=5)  # after its release timed out
    samples = scrape(port)
    assert value(samples, "leader_election_transitions_total", direction="lost", reason="deadline") == 1
    assert value(samples, "leader_election_term") == term
    failed = sum(v for (name, _), v in samples.items() if name == "leader_election_renewal_failures_total")
    assert failed >= 1
    status, body = healthz(port)
    assert (status, body["role"], body["seconds_since_renewal"], body["problems"]) == (200, "worker", None, [])
    proxy.heal()
    proxy.close()


# -- in process: what the library registers, what the demo adds --------------------------------------

def exposition(registry: CollectorRegistry) -> tuple[Samples, str]:
    text = generate_latest(registry).decode()
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}, text


def test_the_library_registers_only_election_metrics_in_its_own_terms() -> None:
    """A user's registry holds the election's metrics (and the process's), nothing of the demo's,
    and their help speaks of the library's arguments, not of the demo's settings."""
    metrics = ElectionMetrics("web-1", "memory")
    samples, text = exposition(metrics.registry)
    ours = {name for name, _ in samples if not name.startswith(("process_", "python_"))}
    assert ours and all(name.startswith("leader_election_") for name in ours), sorted(ours)
    assert not hasattr(metrics, "stored")
    assert "weather" not in text.lower() and "INSTANCE_ID" not in text
    assert value(samples, "leader_election_instance_info", instance_id="web-1", backend="memory") == 1

    demo = WeatherMetrics("web-1", "memory")
    assert value(exposition(demo.registry)[0], "weather_rows_written_total") == 0
    demo.stored(3)
    demo.stored(2)
    samples, _ = exposition(demo.registry)
    assert value(samples, "weather_rows_written_total") == 5
    assert value(samples, "leader_election_is_leader") == 0  # the election's metrics as well


# -- in process: a leader whose event loop is blocked ----------------------------------------------

def test_healthz_fails_for_a_leader_that_stopped_renewing_without_stepping_down(azurite, container_name,
                                                                                caplog) -> None:
    """A leader task that blocks the event loop (a blocking call in an async function) keeps the
    election from renewing and from stepping down: the process thinks it leads, and its lease runs
    out. /healthz, served by its own thread, must say so; a SIGSTOPped process could not answer."""
    caplog.set_level(logging.INFO, logger="DistributedMutex")
    metrics = ElectionMetrics("wedged", "azure")
    server = MetricsServer(metrics, "127.0.0.1", 0).start()
    port = server.port
    status, body = healthz(port)
    assert status == 503 and body["problems"] == ["the election loop has not started"], body

    leading, wedge, unwedge = threading.Event(), threading.Event(), threading.Event()

    async def lead(ctx: RoleContext) -> None:
        leading.set()
        await blocking(wedge.wait)  # waits in a thread: the loop runs on
        unwedge.wait(60)  # blocks the event loop itself
        await asyncio.Event().wait()

    backend = AzureBlobLeaseBackend(azurite.connection_string, container_name, "weather-leader", lease_duration=15)
    run = Running(DistributedMutex(lead, backend=backend, identity=Identity("wedged"), timing=FAST,
                                   observer=metrics))
    try:
        assert leading.wait(10)
        status, body = health_when(port, lambda _, body: body["role"] == "leader", 5, "never a leader")
        assert status == 200 and body["term"] == 1 and body["problems"] == [], body

        wedge.set()
        status, body = health_when(port, lambda status, _: status == 503, LOOP_STALL_LIMIT + 3,
                                   "a blocked loop went unnoticed")
        assert body["role"] == "leader"
        assert body["problems"][0].startswith("the election loop has been blocked for"), body
        # Still a leader in its own eyes when the lease may have gone to another instance.
        status, body = health_when(port, lambda _, body: len(body["problems"]) == 2, FAST.lease_duration + 3,
                                   "a leader past its lease went unnoticed")
        assert status == 503 and body["seconds_since_renewal"] > FAST.lease_duration, body
        assert "longer than the 15 s lease" in body["problems"][1], body
        assert value(scrape(port), "leader_election_is_leader") == 1  # the metrics still answer

        unwedge.set()  # the loop runs again, finds its deadline passed and steps down
        health_when(port, lambda status, _: status == 200, 10, "not healthy again once the loop ran again")
        assert value(scrape(port), "leader_election_transitions_total", direction="lost", reason="deadline") == 1
        # Logged once the lease is released, which comes after the role ends.
        wait_until(lambda: any("lost leadership: no renewal within 13 s" in r.getMessage() for r in caplog.records),
                   5, "the step-down was not logged")
    finally:
        wedge.set()
        unwedge.set()
        run.stop()
    status, body = healthz(port)
    assert status == 503 and body["problems"] == ["the election loop has stopped"], body
    server.close()


def _exploding(name: str) -> Callable[..., None]:
    def method(self: Any, *args: object) -> None:
        self.calls.append(name)
        raise RuntimeError(f"observer bug in {name}")
    return method


# An observer each of whose methods raises.
Exploding = type("Exploding", (ElectionObserver,), {
    "__init__": lambda self: setattr(self, "calls", []),
    **{name: _exploding(name) for name in vars(ElectionObserver) if not name.startswith("_")},
})


def test_an_observer_that_raises_never_stops_the_election(azurite, container_name, caplog) -> None:
    caplog.set_level(logging.INFO, logger="DistributedMutex")
    leading = threading.Event()

    async def lead(ctx: RoleContext) -> None:
        leading.set()
        await asyncio.Event().wait()

    observer = Exploding()
    backend = AzureBlobLeaseBackend(azurite.connection_string, container_name, "weather-leader", lease_duration=15)
    run = Running(DistributedMutex(lead, backend=backend, identity=Identity("x"), timing=FAST, observer=observer))
    try:
        assert leading.wait(10), "it never led"
    finally:
        took = run.stop()
    assert took < 3
    assert {"election_started", "lease_call", "became_leader", "lost_leadership", "election_stopped"} <= set(
        observer.calls), observer.calls
    complaints = [r.getMessage() for r in caplog.records if "election observer" in r.getMessage()]
    assert len(complaints) == 1 and "observer bug in election_started" in complaints[0], complaints
