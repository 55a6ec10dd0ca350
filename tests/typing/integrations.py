"""What a user's type checker sees of the scheduler integrations (type-checked only, never run):
typed answers although APScheduler 3 and Celery ship no type information."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from DistributedMutex import ElectionBackend
from DistributedMutex.integrations.apscheduler import LeaderScheduler, current_term
from DistributedMutex.integrations.celery import LeaderScheduler as BeatScheduler
from DistributedMutex.integrations.celery import TermCheckedTask, every, leader_term

if TYPE_CHECKING:
    from typing_extensions import assert_type


def apscheduler(scheduler: object, backend: ElectionBackend) -> None:
    leader = LeaderScheduler(scheduler, backend=backend, missed_before_leading="skip")
    assert_type(leader.term, int | None)
    assert_type(leader.current_term(), int)
    assert_type(current_term(), int)
    LeaderScheduler(scheduler, backend=backend, missed_before_leading="never")  # type: ignore[arg-type]
    leader.run()


def celery(request: Any, scheduler: BeatScheduler) -> None:
    assert_type(leader_term(request), int | None)
    assert_type(scheduler.term, int | None)
    every(timedelta(seconds=5))
    every(1.0)

    class Report(TermCheckedTask):
        allow_without_term = True

        def check_term(self, term: int) -> None:
            super().check_term(term)
