"""What the driver's inbox holds: a peer's message (as the listener delivered it), a call
submitted to the driver, a nudge, or the end-of-work mark (node.py)."""

from __future__ import annotations

import concurrent.futures
import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from DistributedMutex.backends.raft.core import RaftCore
from DistributedMutex.backends.raft.messages import Message


class _Stop(enum.Enum):
    """The driver's inbox's end-of-work mark (an enum member, so that ``is _STOP`` narrows)."""

    STOP = "stop"


class _Nudge(enum.Enum):
    NUDGE = "nudge"


_STOP = _Stop.STOP
# A wake-up for the driver: a message handled inline moved the core's next deadline earlier
# than the one the driver sleeps towards (elected: the first heartbeat round is due sooner).
_NUDGE = _Nudge.NUDGE


@dataclass(frozen=True, slots=True)
class _Delivery:
    """A peer's message as the listener read it: ``taken()`` tells the listener the driver has it
    (a connection with too many messages waiting is not read until then)."""

    message: Message
    taken: Callable[[], None]

# A call from submit(): what to run on the core, and the future its caller waits on.
_Call = tuple[Callable[[RaftCore, float], Any], concurrent.futures.Future[Any]]
# What the driver's inbox holds: a peer's message, a call, _NUDGE or _STOP.
_Item = _Delivery | Message | _Call | _Stop | _Nudge


def run_call(core: RaftCore, now: float, fn: Callable[[RaftCore, float], Any],
             future: concurrent.futures.Future[Any]) -> Callable[[], None] | None:
    """Run one call; returns what resolves its future, for once the status is published."""
    if not future.set_running_or_notify_cancel():
        return None  # its caller gave up on it: doing it now would act behind its back
    try:
        result = fn(core, now)
    except Exception as exc:  # noqa: BLE001 - handed to the caller
        # partial, not a lambda: ``exc`` is unbound once this except clause ends.
        return functools.partial(future.set_exception, exc)
    return functools.partial(future.set_result, result)
