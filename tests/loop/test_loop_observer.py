"""What the election loop tells its observer, and the leadership journal, for every way a
leadership ends. On MemoryBackend in virtual time."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from DistributedMutex import DistributedMutex, Identity
from DistributedMutex.journal import LeadershipJournal, read_journal
from DistributedMutex.observer import STEP_DOWN_CAUSES, ElectionObserver, StepDownReason
from DistributedMutex.roles import LeaderContext
from DistributedMutex.testing import MemoryBackend, MemoryStore, VirtualClock, running, wait_until


class Recorder(ElectionObserver):
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def election_started(self) -> None:
        self.calls.append(("election_started",))

    def election_stopped(self) -> None:
        self.calls.append(("election_stopped",))

    def became_leader(self, term: int, lease_age: float, lease_duration: float) -> None:
        self.calls.append(("became_leader", term, lease_age, lease_duration))

    def renewed(self, term: int, lease_age: float) -> None:
        self.calls.append(("renewed", term))

    def renewal_failed(self, cause: str) -> None:
        self.calls.append(("renewal_failed", cause))

    def lost_leadership(self, term: int, cause: StepDownReason) -> None:
        self.calls.append(("lost_leadership", term, cause))

    def term_advanced(self, term: int) -> None:
        self.calls.append(("term_advanced", term))

    def leader_seen(self, leader_id: str, term: int) -> None:
        self.calls.append(("leader_seen", leader_id, term))

    def lease_call(self, operation: str, seconds: float, outcome: str) -> None:
        self.calls.append(("lease_call", operation, outcome))

    def named(self, name: str) -> list[tuple[Any, ...]]:
        return [call for call in self.calls if call[0] == name]


def test_the_reasons_are_the_metric_labels() -> None:
    assert STEP_DOWN_CAUSES == ("shutdown", "lease_lost", "deadline", "task_failed", "stalled")
    assert StepDownReason.DEADLINE == "deadline" and str(StepDownReason.STALLED) == "stalled"


def test_a_leadership_from_start_to_shutdown(clock: VirtualClock, store: MemoryStore) -> None:
    recorder = Recorder()

    async def lead(ctx: LeaderContext) -> None:
        await asyncio.sleep(0.5)
        await ctx.advance_term(7)
        await asyncio.Event().wait()

    a = DistributedMutex(lead, backend=MemoryBackend(store), identity=Identity("a"), observer=recorder)

    async def scenario() -> None:
        async with running(a):
            await asyncio.sleep(1.05)

    clock.run(scenario())
    names = [call[0] for call in recorder.calls if call[0] not in ("renewed", "lease_call")]
    assert names == ["election_started", "became_leader", "term_advanced", "lost_leadership", "election_stopped"]
    assert recorder.named("became_leader") == [("became_leader", 1, 0.0, 0.5)]
    assert recorder.named("term_advanced") == [("term_advanced", 7)]
    assert recorder.named("lost_leadership") == [("lost_leadership", 7, StepDownReason.SHUTDOWN)]
    assert len(recorder.named("renewed")) == 10 and recorder.named("renewed")[-1] == ("renewed", 7)
    operations = [call[1:] for call in recorder.named("lease_call")]
    assert operations[0] == ("acquire", "ok") and operations[-1] == ("release", "ok")


def test_a_worker_reports_each_new_leader_once(clock: VirtualClock, store: MemoryStore) -> None:
    recorder = Recorder()

    async def lead(ctx: LeaderContext) -> None:
        await asyncio.Event().wait()

    a = DistributedMutex(lead, backend=MemoryBackend(store), identity=Identity("a"))
    b = DistributedMutex(lead, backend=MemoryBackend(store), identity=Identity("b"), observer=recorder)

    async def scenario() -> None:
        async with running(a):
            await wait_until(lambda: store.holder() == "a", within=1, what="a leading")
            async with running(b):
                await asyncio.sleep(2)
        assert b.leader is not None and b.leader.instance_id == "a"

    clock.run(scenario())
    assert recorder.named("leader_seen") == [("leader_seen", "a", 1)]
    assert ("lease_call", "acquire", "held") in recorder.calls


def _cut_off(store: MemoryStore, link: MemoryBackend) -> None:
    link.outage()


def _paused(store: MemoryStore, link: MemoryBackend) -> None:
    link.pause()


def _broken(store: MemoryStore, link: MemoryBackend) -> None:
    store.break_lease()


@pytest.mark.parametrize(("fault", "cause", "renewal_failure"), [
    (_cut_off, StepDownReason.DEADLINE, "unavailable"),
    (_paused, StepDownReason.DEADLINE, "timeout"),
    (_broken, StepDownReason.LEASE_LOST, "lost"),
])
def test_each_storage_fault_has_its_cause(clock: VirtualClock, store: MemoryStore, tmp_path: Path,
                                          fault: Callable[[MemoryStore, MemoryBackend], None],
                                          cause: StepDownReason, renewal_failure: str) -> None:
    recorder, journal = Recorder(), LeadershipJournal(tmp_path / "journal.jsonl")

    async def lead(ctx: LeaderContext) -> None:
        await asyncio.Event().wait()

    link = MemoryBackend(store)
    a = DistributedMutex(lead, backend=link, identity=Identity("a"), observer=recorder, journal=journal)

    async def scenario() -> None:
        async with running(a):
            await asyncio.sleep(1.05)
            fault(store, link)
            await wait_until(lambda: recorder.named("lost_leadership"), within=2, what="a stepping down")
            link.resume()

    clock.run(scenario())
    journal.close()
    assert recorder.named("lost_leadership")[0] == ("lost_leadership", 1, cause)
    assert ("renewal_failed", renewal_failure) in recorder.calls
    stop = next(entry for entry in read_journal(tmp_path / "journal.jsonl") if entry["event"] == "stop")
    assert stop["term"] == 1 and stop["reason"]


@pytest.mark.parametrize(("stall_timeout", "cause"), [(None, StepDownReason.TASK_FAILED),
                                                      (0.5, StepDownReason.STALLED)])
def test_failed_and_stalled_leader_work_have_their_causes(clock: VirtualClock, store: MemoryStore,
                                                          stall_timeout: float | None, cause: StepDownReason) -> None:
    recorder = Recorder()

    async def lead(ctx: LeaderContext) -> None:
        await asyncio.sleep(1)
        raise RuntimeError("boom")

    a = DistributedMutex(lead, backend=MemoryBackend(store), identity=Identity("a"), observer=recorder,
                         stall_timeout=stall_timeout)

    async def scenario() -> None:
        async with running(a):
            await wait_until(lambda: recorder.named("lost_leadership"), within=2, what="a stepping down")

    clock.run(scenario())
    assert recorder.named("lost_leadership")[0] == ("lost_leadership", 1, cause)


def test_an_observer_that_raises_is_logged_once_and_never_stops_the_election(
        clock: VirtualClock, store: MemoryStore, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="DistributedMutex")

    class Broken(ElectionObserver):
        def renewed(self, term: int, lease_age: float) -> None:
            raise ZeroDivisionError("observer bug")

    led: list[int] = []

    async def lead(ctx: LeaderContext) -> None:
        led.append(ctx.term)
        await asyncio.Event().wait()

    a = DistributedMutex(lead, backend=MemoryBackend(store), identity=Identity("a"), observer=Broken())

    async def scenario() -> None:
        async with running(a):
            await asyncio.sleep(2)

    clock.run(scenario())
    assert led == [1], "the observer's failures cost the leadership"
    assert len([r for r in caplog.records if "observer Broken failed" in r.getMessage()]) == 1


def test_the_metrics_label_a_step_down_with_the_reasons_value(clock: VirtualClock, store: MemoryStore) -> None:
    metrics_module = pytest.importorskip("DistributedMutex.metrics")
    metrics = metrics_module.ElectionMetrics("a", "memory", clock=clock)

    async def lead(ctx: LeaderContext) -> None:
        await asyncio.Event().wait()

    a = DistributedMutex(lead, backend=MemoryBackend(store), identity=Identity("a"), observer=metrics)

    async def scenario() -> None:
        async with running(a):
            await asyncio.sleep(1)
            store.break_lease()
            await asyncio.sleep(0.1)

    clock.run(scenario())
    lost = metrics.registry.get_sample_value("leader_election_transitions_total",
                                             {"direction": "lost", "reason": "lease_lost"})
    assert lost == 1
