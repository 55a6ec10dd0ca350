"""DistributedMutex, in-process, on real Azurite: safety at the deadline, loss, shutdown, failures."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator

import pytest
from azure.storage.blob import BlobLeaseClient, BlobServiceClient

from DistributedMutex import AzureBlobLeaseBackend, DistributedMutex, ElectionTiming, Identity, RoleContext
from DistributedMutex.backends.azure.lease import DEFAULT_API_VERSION
from harness.services import connection_string
from harness.tcpproxy import TcpProxy

FAST = ElectionTiming(lease_duration=15, renew_interval=5, acquire_interval=0.5)


class Events:
    """What the role tasks did, with monotonic times; waits on a condition, never on a sleep."""

    def __init__(self) -> None:
        self.items: list[tuple[str, str, int | None, float]] = []
        self._changed = threading.Condition()

    def add(self, who: str, what: str, term: int | None) -> None:
        with self._changed:
            self.items.append((who, what, term, time.monotonic()))
            self._changed.notify_all()

    def wait(self, who: str, what: str, timeout: float, nth: int = 1) -> tuple[str, str, int | None, float]:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [e for e in self.items if e[0] == who and e[1] == what]
                if len(found) >= nth:
                    return found[nth - 1]
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"{who} did not {what} (#{nth}) within {timeout:g} s: {self.items}")
                self._changed.wait(remaining)


def recording_leader(events: Events, who: str):
    async def lead(ctx: RoleContext) -> None:
        events.add(who, "lead", ctx.term)
        try:
            await asyncio.Event().wait()
        finally:
            events.add(who, "stop leading", ctx.term)
    return lead


class Running:
    """A DistributedMutex running its loop in a thread of its own."""

    def __init__(self, mutex: DistributedMutex) -> None:
        self.mutex = mutex
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            asyncio.run(self.mutex.run_async())
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            self.error = exc

    def stop(self, timeout: float = 5.0) -> float:
        started = time.monotonic()
        while self.mutex._loop is None:  # not started yet
            time.sleep(0.01)
        self.mutex.stop()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the mutex did not stop"
        assert self.error is None, self.error
        return time.monotonic() - started


@pytest.fixture
def running() -> Iterator[list[Running]]:
    started: list[Running] = []
    yield started
    for run in started:
        if run.thread.is_alive():
            run.stop()


def start(running: list[Running], conn: str, container: str, who: str, lead, work=None,
          timing: ElectionTiming = FAST) -> Running:
    backend = AzureBlobLeaseBackend(conn, container, "weather-leader", lease_duration=int(timing.lease_duration))
    run = Running(DistributedMutex(lead, work, backend=backend, identity=Identity(who), timing=timing))
    running.append(run)
    return run


def lease_client(conn: str, container: str) -> BlobLeaseClient:
    service = BlobServiceClient.from_connection_string(conn, api_version=DEFAULT_API_VERSION)
    return BlobLeaseClient(service.get_blob_client(container, "weather-leader"))


def test_cut_off_leader_stops_acting_before_anyone_else_can_lead(azurite, container_name, running, caplog) -> None:
    caplog.set_level(logging.INFO, logger="DistributedMutex")
    proxy = TcpProxy(azurite.port).start()
    events = Events()
    start(running, connection_string(proxy.port), container_name, "cut", recording_leader(events, "cut"))
    events.wait("cut", "lead", timeout=10)
    start(running, azurite.connection_string, container_name, "direct", recording_leader(events, "direct"))

    cut_at = time.monotonic()
    proxy.blackhole()
    stopped = events.wait("cut", "stop leading", timeout=20)
    successor = events.wait("direct", "lead", timeout=25)
    # The last renewal was sent before the cut, so the local deadline is at most 13 s after it.
    assert stopped[3] - cut_at <= FAST.acting_window + 0.5
    assert stopped[3] < successor[3], "the old leader was still acting when the new one started"
    assert successor[2] == 2
    reasons = [r.getMessage() for r in caplog.records if "lost leadership" in r.getMessage()]
    assert any("no renewal within 13 s of the last one" in m for m in reasons), reasons
    # Healed, it goes back to contending and sees the new leader.
    proxy.heal()
    assert running[0].thread.is_alive()
    deadline = time.monotonic() + 10
    while running[0].mutex.leader is None or running[0].mutex.leader.instance_id != "direct":
        assert time.monotonic() < deadline, "the healed instance never saw the new leader"
        time.sleep(0.05)
    proxy.close()


def test_a_lost_lease_means_stepping_down_at_once_and_contending_again(azurite, container_name, running, caplog) -> None:
    caplog.set_level(logging.INFO, logger="DistributedMutex")
    events = Events()
    start(running, azurite.connection_string, container_name, "a", recording_leader(events, "a"))
    events.wait("a", "lead", timeout=10)
    broken_at = time.monotonic()
    lease_client(azurite.connection_string, container_name).break_lease(lease_break_period=0)
    stopped = events.wait("a", "stop leading", timeout=FAST.renew_interval + 2)
    assert stopped[3] - broken_at <= FAST.renew_interval + 1
    again = events.wait("a", "lead", timeout=10, nth=2)
    assert again[2] == 2, "a new leadership must have a new term"
    assert any("lost leadership: lease lost (LeaseIsBrokenAndCannotBeRenewed)" in r.getMessage()
               for r in caplog.records)


def test_stop_ends_leader_work_then_releases_the_lease_promptly(azurite, container_name, running) -> None:
    events = Events()
    run = start(running, azurite.connection_string, container_name, "a", recording_leader(events, "a"))
    events.wait("a", "lead", timeout=10)
    took = run.stop()
    assert took < 3
    assert events.wait("a", "stop leading", timeout=0)
    service = BlobServiceClient.from_connection_string(azurite.connection_string, api_version=DEFAULT_API_VERSION)
    lease = service.get_blob_client(container_name, "weather-leader").get_blob_properties().lease
    assert lease.state == "available"


def test_plain_function_tasks_run_in_threads_and_stop_when_asked(azurite, container_name, running) -> None:
    events = Events()

    def lead(ctx: RoleContext) -> None:
        events.add("plain", "lead", ctx.term)
        while ctx.sleep(0.05):
            pass
        events.add("plain", "stop leading", ctx.term)

    def work(ctx: RoleContext) -> None:
        events.add("plain", "work", None)
        ctx.sleep(60)

    run = start(running, azurite.connection_string, container_name, "plain", lead, work)
    events.wait("plain", "lead", timeout=10)
    assert run.stop() < 3
    events.wait("plain", "stop leading", timeout=0)
    events.wait("plain", "work", timeout=0)


def test_a_failing_leader_task_gives_the_lease_up_and_the_loop_goes_on(azurite, container_name, running, caplog) -> None:
    caplog.set_level(logging.INFO, logger="DistributedMutex")
    events = Events()

    async def lead(ctx: RoleContext) -> None:
        events.add("f", "lead", ctx.term)
        if ctx.term == 1:
            raise RuntimeError("boom")
        await asyncio.Event().wait()

    start(running, azurite.connection_string, container_name, "f", lead)
    events.wait("f", "lead", timeout=10)
    second = events.wait("f", "lead", timeout=10, nth=2)
    assert second[2] == 2
    messages = [r.getMessage() for r in caplog.records]
    assert any("leader task failed: boom" in m for m in messages)
    assert any("lost leadership: leader task failed" in m for m in messages)


def test_workers_never_see_stopped_leading_callbacks(azurite, container_name, running, caplog) -> None:
    caplog.set_level(logging.INFO, logger="DistributedMutex")
    events = Events()
    start(running, azurite.connection_string, container_name, "a", recording_leader(events, "a"))
    events.wait("a", "lead", timeout=10)

    async def work(ctx: RoleContext) -> None:
        events.add("b", "work", None)
        await asyncio.Event().wait()

    run_b = start(running, azurite.connection_string, container_name, "b", recording_leader(events, "b"), work)
    events.wait("b", "work", timeout=10)
    run_b.stop()
    assert not [e for e in events.items if e[0] == "b" and e[1] != "work"]


def test_a_wedged_leader_gives_up_so_that_a_healthy_instance_leads(azurite, container_name, running, caplog) -> None:
    caplog.set_level(logging.INFO, logger="DistributedMutex")
    events = Events()

    async def wedged(ctx: RoleContext) -> None:
        events.add("wedged", "lead", ctx.term)
        try:
            await asyncio.Event().wait()  # hangs and never reports progress
        finally:
            events.add("wedged", "stop leading", ctx.term)

    backend = AzureBlobLeaseBackend(azurite.connection_string, container_name, "weather-leader")
    run = Running(DistributedMutex(wedged, backend=backend, identity=Identity("wedged"), timing=FAST,
                                   stall_timeout=2))
    running.append(run)
    events.wait("wedged", "lead", timeout=10)
    start(running, azurite.connection_string, container_name, "healthy", recording_leader(events, "healthy"))
    stopped = events.wait("wedged", "stop leading", timeout=5)
    took_over = events.wait("healthy", "lead", timeout=5)
    assert stopped[3] < took_over[3]
    assert took_over[2] == 2
    lines = [r.getMessage() for r in caplog.records if "lost leadership" in r.getMessage()]
    assert lines == ["lost leadership: leader work made no progress for 2 s; giving the lease up for a healthy instance"]
