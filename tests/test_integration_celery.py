"""DistributedMutex.integrations.celery in one process: the settings' refusals, every()'s alignment,
TermCheckedTask's refusals, and two beat LeaderSchedulers on one memory-backend store sending through
Celery's in-memory broker (what goes out is read off Celery's before_task_publish signal). The real
processes, workers and broker: test_celery_beat_processes.py."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from celery import Celery
from celery.signals import before_task_publish

from DistributedMutex import ConfigurationError
from DistributedMutex.integrations.celery import (
    BACKEND_ENV,
    SENT_AT_HEADER,
    TERM_HEADER,
    LeaderScheduler,
    TermCheckedTask,
    backend_from,
    every,
    leader_term,
)
from DistributedMutex.testing.memory import MemoryBackend, MemoryStore
from harness.processes import wait_until

STORE = MemoryStore()  # for "module:name" settings below


def make_backend() -> MemoryBackend:
    return MemoryBackend(STORE)


def test_the_backend_setting_is_an_instance_a_factory_or_a_name_and_refusals_name_the_setting() -> None:
    backend = MemoryBackend()
    assert backend_from(backend, None) is backend
    assert backend_from(lambda: backend, None) is backend
    assert isinstance(backend_from(f"{__name__}:make_backend", None), MemoryBackend)
    assert isinstance(backend_from(None, f"{__name__}:make_backend"), MemoryBackend)  # the environment's
    for setting, environment, message in [
        (None, None, f"distributed_mutex_backend: is not set (nor {BACKEND_ENV}, nor ELECTION_BACKEND)"),
        ("no-colon", None, "distributed_mutex_backend: must be \"module:name\", got 'no-colon'"),
        (None, "nowhere.at_all:x", f"{BACKEND_ENV}: cannot load 'nowhere.at_all:x'"),
        (f"{__name__}:STORE", None, "distributed_mutex_backend: must give an ElectionBackend, got MemoryStore"),
    ]:
        with pytest.raises(ConfigurationError) as caught:
            backend_from(setting, environment)
        assert str(caught.value).startswith(message) and "\n" not in str(caught.value), caught.value


def test_every_is_due_on_multiples_of_its_period_since_the_epoch() -> None:
    now = [datetime(2026, 1, 1, 10, 0, 0, 900000, tzinfo=timezone.utc)]
    schedule = every(1.0, nowfun=lambda: now[0])
    last = datetime(2026, 1, 1, 10, 0, 0, 300000, tzinfo=timezone.utc)
    due, wait = schedule.is_due(last)
    assert (due, round(wait, 3)) == (False, 0.1)
    now[0] = datetime(2026, 1, 1, 10, 0, 1, 50000, tzinfo=timezone.utc)
    due, wait = schedule.is_due(last)
    assert (due, round(wait, 3)) == (True, 0.95)
    assert every(timedelta(minutes=5)).seconds == 300
    for bad in (0, -1, "1"):
        with pytest.raises(ConfigurationError, match=r"^run_every: must be a positive number of seconds"):
            every(bad)  # type: ignore[arg-type]


def test_a_term_checked_task_refuses_an_older_term_and_a_message_without_one() -> None:
    app = Celery("checked", broker="memory://", set_as_current=False)
    ran: list[int] = []

    @app.task(bind=True, base=TermCheckedTask, name="checked.job")
    def job(self: Any) -> None:
        ran.append(leader_term(self.request))

    states = [job.apply(headers=headers).state for headers in
              ({TERM_HEADER: 5}, {TERM_HEADER: 4}, {}, {TERM_HEADER: 5}, {TERM_HEADER: 6})]
    assert states == ["SUCCESS", "IGNORED", "IGNORED", "SUCCESS", "SUCCESS"]
    assert ran == [5, 5, 6]


class Beat:
    """One beat: a LeaderScheduler of its own app, ticking in a thread as `celery beat` would."""

    def __init__(self, name: str, store: MemoryStore) -> None:
        self.app = Celery(f"beat-{name}", broker="memory://", set_as_current=False)
        self.app.conf.update(beat_schedule={"tick": {"task": "beat.tick", "schedule": every(0.2)}},
                             distributed_mutex_backend=MemoryBackend(store), distributed_mutex_instance_id=name)
        self.scheduler = LeaderScheduler(app=self.app)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._stop.wait(self.scheduler.tick())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.scheduler.close()


@pytest.fixture
def sent() -> Iterator[list[dict[str, Any]]]:
    headers: list[dict[str, Any]] = []

    def seen(sender: str | None = None, **kwargs: Any) -> None:
        headers.append({**(kwargs.get("headers") or {}), "task": sender})

    before_task_publish.connect(seen, weak=False)
    yield headers
    before_task_publish.disconnect(seen)


def test_two_beats_send_each_interval_once_with_the_term_and_hand_over(sent: list[dict[str, Any]]) -> None:
    store = MemoryStore()
    beats = {name: Beat(name, store) for name in ("a", "b")}
    try:
        wait_until(lambda: len(sent) >= 5, 10, "no five ticks sent")
        first = {h["leader_id"] for h in sent}
        assert len(first) == 1, f"both beats sent: {sent}"
        leader = beats[first.pop()]
        other = next(b for b in beats.values() if b is not leader)
        assert {h[TERM_HEADER] for h in sent} == {leader.scheduler.term} and other.scheduler.term is None
        before = len(sent)
        leader.close()
        gone = leader.app.conf.distributed_mutex_instance_id
        wait_until(lambda: len([h for h in sent[before:] if h["leader_id"] != gone]) >= 3, 10,
                   "the other beat did not take over")
    finally:
        for beat in beats.values():
            beat.close()
    slots = [int(h[SENT_AT_HEADER] // 0.2) for h in sent]
    assert len(slots) == len(set(slots)), f"an interval was sent twice: {sorted(slots)}"
    terms = [h[TERM_HEADER] for h in sent]
    assert terms == sorted(terms) and len(set(terms)) == 2, terms
    assert {h["task"] for h in sent} == {"beat.tick"}
