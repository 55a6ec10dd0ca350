"""DistributedMutex.integrations.apscheduler in one process, on the memory backend: two replicas'
LeaderSchedulers on one store. What the process test (test_apscheduler_processes.py) cannot pin
down: the refusals, the term a job reads, the rule for a run still going when leadership ends, and
the two policies for the run times that passed before an instance led."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import Any

import pytest
from apscheduler.events import EVENT_JOB_EXECUTED
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.blocking import BlockingScheduler

from DistributedMutex import ConfigurationError, Identity, LeaseLostError
from DistributedMutex.integrations.apscheduler import LeaderScheduler, current_term
from DistributedMutex.testing.memory import MemoryBackend, MemoryStore
from harness.processes import wait_until


class Replica:
    """A BackgroundScheduler with one interval job, under a LeaderScheduler of its own."""

    def __init__(self, name: str, store: MemoryStore, job: Callable[[Replica], None], *, seconds: float = 0.2,
                 **options: Any) -> None:
        self.name = name
        self.runs: list[tuple[int, datetime]] = []  # (term read by the job, its scheduled run time)
        self.executed: list[datetime] = []
        self.scheduler = BackgroundScheduler(timezone=timezone.utc)
        self.scheduler.add_job(job, "interval", args=[self], seconds=seconds, id="job", misfire_grace_time=30)
        self.scheduler.add_listener(lambda event: self.executed.append(event.scheduled_run_time), EVENT_JOB_EXECUTED)
        self.leader = LeaderScheduler(self.scheduler, backend=MemoryBackend(store), identity=Identity(name), **options)


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    made: list[Replica] = []
    yield made
    for replica in made:
        replica.leader.stop(5)


def record(replica: Replica) -> None:
    replica.runs.append((replica.leader.current_term(), datetime.now(timezone.utc)))


def test_refusals_name_the_argument() -> None:
    backend = MemoryBackend()
    for scheduler, words in [(object(), "must be an APScheduler 3 scheduler"),
                             (BlockingScheduler(), "BlockingScheduler never returns")]:
        with pytest.raises(ConfigurationError, match=words) as caught:
            LeaderScheduler(scheduler, backend=backend)
        assert str(caught.value).startswith("scheduler: ")
    with pytest.raises(ConfigurationError, match=r"^missed_before_leading: must be 'skip' or 'apscheduler'"):
        LeaderScheduler(BackgroundScheduler(), backend=backend, missed_before_leading="all")  # type: ignore[arg-type]
    started = BackgroundScheduler()
    started.start()
    try:
        with pytest.raises(ConfigurationError, match=r"^scheduler: is already started"):
            LeaderScheduler(started, backend=backend)
    finally:
        started.shutdown(wait=False)


def test_without_a_backend_the_election_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Any) -> None:
    """As `distributed-mutex run` reads it: ELECTION_BACKEND and its settings, the same one-line refusals."""
    monkeypatch.delenv("ELECTION_BACKEND", raising=False)
    with pytest.raises(ConfigurationError, match=r"^backend: not given, and ELECTION_BACKEND is not set"):
        LeaderScheduler(BackgroundScheduler())
    monkeypatch.setenv("ELECTION_BACKEND", "raft")
    monkeypatch.setenv("RAFT_PEERS", "a=127.0.0.1:1,b=127.0.0.1:2,c=127.0.0.1:3")
    monkeypatch.setenv("RAFT_ID", "d")
    with pytest.raises(ConfigurationError, match=r"^RAFT_ID: 'd' is not one of the ids in RAFT_PEERS"):
        LeaderScheduler(BackgroundScheduler())
    monkeypatch.setenv("RAFT_ID", "a")
    monkeypatch.setenv("RAFT_DATA_DIR", str(tmp_path))
    leader = LeaderScheduler(BackgroundScheduler())
    assert leader.term is None  # made, not started: nothing contends yet


def test_jobs_run_on_the_leader_only_with_its_term_and_move_over_on_a_stop(replicas: list[Replica]) -> None:
    store = MemoryStore()
    replicas += [Replica(name, store, record) for name in ("a", "b")]
    for replica in replicas:
        replica.leader.start()
    first = wait_until(lambda: next((r for r in replicas if r.leader.term is not None), None), 5, "nobody leads")
    other = next(r for r in replicas if r is not first)
    wait_until(lambda: len(first.runs) >= 3, 5, "the leader's job did not run")
    assert other.runs == [] and other.leader.term is None
    with pytest.raises(LeaseLostError):
        other.leader.current_term()
    assert {term for term, _ in first.runs} == {first.leader.term}
    # The module's current_term() answers for the LeaderScheduler started last: b.
    if replicas[1] is first:
        assert current_term() == first.leader.term
    else:
        with pytest.raises(LeaseLostError):
            current_term()

    first.leader.stop(5)
    stopped_at = datetime.now(timezone.utc)
    runs_then = len(first.runs)
    wait_until(lambda: len(other.runs) >= 3, 5, "the other replica's job did not take over")
    assert len(first.runs) == runs_then, "the stopped replica's job ran on"
    assert min(term for term, _ in other.runs) > max(term for term, _ in first.runs[:runs_then])
    assert min(at for _, at in other.runs) >= stopped_at


def test_a_run_going_when_leadership_ends_finishes_before_the_lease_is_released(replicas: list[Replica]) -> None:
    """The documented rule: no new run after the step-down, the running one allowed to finish (it can
    no longer read a term), and only then the lease released for another replica."""
    store = MemoryStore(lease_duration=5.0)
    started, finish = threading.Event(), threading.Event()
    seen: list[str] = []

    def slow(replica: Replica) -> None:
        replica.runs.append((replica.leader.current_term(), datetime.now(timezone.utc)))
        if replica.name == "a":
            started.set()
            finish.wait(10)
            try:
                replica.leader.current_term()
            except LeaseLostError:
                seen.append("no term after the step-down")

    replicas.append(Replica("a", store, slow))
    replicas[0].leader.start()
    wait_until(lambda: replicas[0].leader.term is not None, 5, "a does not lead")
    replicas.append(Replica("b", store, slow))
    replicas[1].leader.start()
    assert started.wait(5), "a's job did not start"
    stopping = threading.Thread(target=replicas[0].leader.stop, args=(10,))
    stopping.start()
    time.sleep(1.0)  # b must NOT lead in this second: a's run still holds the lease
    assert replicas[1].leader.term is None and replicas[1].runs == [], "b led while a's job was running"
    assert replicas[0].leader.term is None
    finish.set()
    stopping.join(10)
    assert seen == ["no term after the step-down"]
    wait_until(lambda: replicas[1].runs, 5, "b did not take over once a's job had finished")


@pytest.mark.parametrize("policy", ["skip", "apscheduler"])
def test_run_times_that_passed_before_leading(replicas: list[Replica], policy: str) -> None:
    """'skip': the new leader's first run is due after it began to lead (the previous leader may have
    run the earlier ones), on the interval's grid; 'apscheduler': the paused scheduler's misfire rules
    run the missed time once (coalesce), at once on resume."""
    store = MemoryStore()
    replicas.append(Replica("a", store, record, seconds=1.0))
    replicas[0].leader.start()
    wait_until(lambda: replicas[0].leader.term is not None, 5, "a does not lead")
    time.sleep(0.3)  # b adds its job at another phase of the second than a
    replicas.append(Replica("b", store, record, seconds=1.0, missed_before_leading=policy))
    replicas[1].leader.start()
    time.sleep(1.5)  # b's job falls due while a leads
    replicas[0].leader.stop(5)
    took_over = datetime.now(timezone.utc)
    b = replicas[1]
    wait_until(lambda: b.executed, 5, "b ran nothing")
    first = b.executed[0]
    if policy == "skip":
        assert first >= took_over, f"b ran a run time ({first}) that passed before it led ({took_over})"
        # align_intervals: whenever b added its job, it runs on whole seconds, as a would have.
        assert [t.microsecond for t in b.executed] == [0] * len(b.executed), b.executed
    else:
        assert first < took_over, f"b's first run ({first}) was not the coalesced missed one"
        assert (b.runs[0][1] - took_over).total_seconds() < 0.5, "the missed run was not run at once on resume"
