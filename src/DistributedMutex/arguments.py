"""DistributedMutex's constructor arguments, checked when it is built: a bad one is refused in one
line naming it and its rule (ConfigurationError), rather than failing later with an AttributeError,
or running an election that misbehaves (a negative stall timeout gave up every term it won).

The timing is checked against the backend by timing.timing_for, on_task_failure by the constructor.
"""

from __future__ import annotations

import inspect
import math

from DistributedMutex.backend import ElectionBackend, Identity
from DistributedMutex.errors import ConfigurationError
from DistributedMutex.journal import LeadershipJournal
from DistributedMutex.observer import ElectionObserver


def check_arguments(*, leader_task: object, worker_task: object, backend: object, identity: object, clock: object,
                    shutdown_grace: object, release_timeout: object, stall_timeout: object, journal: object,
                    observer: object) -> None:
    """ConfigurationError, naming the argument and its rule, for the first bad one: at once, rather
    than an AttributeError later or an election that misbehaves (a negative stall timeout)."""
    _check_task("leader_task", leader_task, "taking a LeaderContext")
    if worker_task is not None:
        _check_task("worker_task", worker_task, "taking a WorkerContext, or None")
    members = [*ElectionBackend.__annotations__,
               *(name for name, value in vars(ElectionBackend).items() if not name.startswith("_") and callable(value))]
    lacking = [name for name in members if not hasattr(backend, name)]
    if lacking:
        raise ConfigurationError("backend", f"must implement ElectionBackend; {type(backend).__name__} lacks "
                                            f"{', '.join(lacking)}")
    if identity is not None and not isinstance(identity, Identity):
        raise ConfigurationError("identity", f"must be an Identity (Identity('name')) or None, got {identity!r}")
    if clock is not None and not callable(clock):
        raise ConfigurationError("clock", f"must be a function returning monotonic seconds, or None, got {clock!r}")
    _check_seconds("shutdown_grace", shutdown_grace, "a number of seconds, 0 or more", zero=True)
    _check_seconds("release_timeout", release_timeout, "a positive number of seconds")
    if stall_timeout is not None:
        _check_seconds("stall_timeout", stall_timeout, "a positive number of seconds or None")
    if journal is not None and not isinstance(journal, LeadershipJournal):
        raise ConfigurationError("journal", f"must be a LeadershipJournal (DistributedMutex.journal) or None, "
                                            f"got {journal!r}")
    if observer is not None and not isinstance(observer, ElectionObserver):
        raise ConfigurationError("observer", f"must be an ElectionObserver or None, got {observer!r}")


def _check_task(name: str, task: object, rule: str) -> None:
    if inspect.iscoroutine(task):
        task.close()  # (it will never run: no "never awaited" warning on top of the error)
        raise ConfigurationError(name, f"must be a function (plain or async) {rule}, got a coroutine: pass the "
                                       f"function itself ({task.__name__}, not {task.__name__}())")
    if not callable(task):
        raise ConfigurationError(name, f"must be a function (plain or async) {rule}, got {task!r}")


def _check_seconds(name: str, value: object, rule: str, *, zero: bool = False) -> None:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0
            or (value == 0 and not zero)):
        raise ConfigurationError(name, f"must be {rule}, got {value!r}")
