"""DistributedMutex refuses a bad argument when it is built: one line, naming the argument and the
rule, rather than an AttributeError later or an election that misbehaves (stall_timeout=-1 won term
after term and gave each back)."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from DistributedMutex import ConfigurationError, DistributedMutex, Identity
from DistributedMutex.observer import ElectionObserver
from DistributedMutex.roles import LeaderContext
from DistributedMutex.testing import MemoryBackend, MemoryStore, VirtualClock, running


def lead(ctx: LeaderContext) -> None:
    while ctx.sleep(1):
        pass


class NoTiming:
    """A backend that implements all of ElectionBackend but default_timing."""

    name = "no-timing"

    def __init__(self) -> None:
        self._inner = MemoryBackend()

    def __getattr__(self, attribute: str) -> Any:
        if attribute == "default_timing":
            raise AttributeError(attribute)
        return getattr(self._inner, attribute)


POSITIVE = "must be a positive number of seconds"
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("stall_timeout=-1", {"stall_timeout": -1}, f"stall_timeout: {POSITIVE} or None, got -1"),
    ("stall_timeout=0", {"stall_timeout": 0}, f"stall_timeout: {POSITIVE} or None, got 0"),
    ("stall_timeout='5'", {"stall_timeout": "5"}, f"stall_timeout: {POSITIVE} or None, got '5'"),
    ("stall_timeout=nan", {"stall_timeout": math.nan}, f"stall_timeout: {POSITIVE} or None, got nan"),
    ("stall_timeout=True", {"stall_timeout": True}, f"stall_timeout: {POSITIVE} or None, got True"),
    ("release_timeout=0", {"release_timeout": 0}, f"release_timeout: {POSITIVE}, got 0"),
    ("release_timeout=None", {"release_timeout": None}, f"release_timeout: {POSITIVE}, got None"),
    ("release_timeout=inf", {"release_timeout": math.inf}, f"release_timeout: {POSITIVE}, got inf"),
    ("shutdown_grace=-5", {"shutdown_grace": -5}, "shutdown_grace: must be a number of seconds, 0 or more, got -5"),
    ("shutdown_grace='1'", {"shutdown_grace": "1"}, "shutdown_grace: must be a number of seconds, 0 or more, got '1'"),
    ("identity='me'", {"identity": "me"},
     "identity: must be an Identity (Identity('name')) or None, got 'me'"),
    ("leader_task=None", {"leader_task": None},
     "leader_task: must be a function (plain or async) taking a LeaderContext, got None"),
    ("worker_task=42", {"worker_task": 42},
     "worker_task: must be a function (plain or async) taking a WorkerContext, or None, got 42"),
    ("clock=0.0", {"clock": 0.0}, "clock: must be a function returning monotonic seconds, or None, got 0.0"),
    ("observer=print", {"observer": print}, "observer: must be an ElectionObserver or None, got <built-in function print>"),
    ("journal='x.jsonl'", {"journal": "x.jsonl"},
     "journal: must be a LeadershipJournal (DistributedMutex.journal) or None, got 'x.jsonl'"),
    ("backend=object()", {"backend": object()},
     "backend: must implement ElectionBackend; object lacks name, default_timing, acquire, renew, "
     "advance_term, release, read_leader, watch, close"),
    ("backend without default_timing", {"backend": NoTiming()},
     "backend: must implement ElectionBackend; NoTiming lacks default_timing"),
]


@pytest.mark.parametrize(("arguments", "message"), [(a, m) for _, a, m in CASES], ids=[c[0] for c in CASES])
def test_a_bad_argument_is_refused_in_one_line_naming_it(arguments: dict[str, Any], message: str) -> None:
    given: dict[str, Any] = {"leader_task": lead, "backend": MemoryBackend(), **arguments}
    leader_task = given.pop("leader_task")
    with pytest.raises(ConfigurationError) as refused:
        DistributedMutex(leader_task, **given)
    assert str(refused.value) == message
    assert refused.value.setting == message.split(":")[0]
    assert "\n" not in str(refused.value)


def test_a_coroutine_passed_for_the_function_is_refused_with_a_hint() -> None:
    async def lead_async(ctx: LeaderContext) -> None:
        await asyncio.sleep(0)

    with pytest.raises(ConfigurationError, match=r"^leader_task: .*got a coroutine: pass the function itself "
                                                 r"\(lead_async, not lead_async\(\)\)$"):
        DistributedMutex(lead_async(LeaderContext("me", 1)), backend=MemoryBackend())  # type: ignore[arg-type]


@pytest.mark.parametrize("arguments", [
    {"stall_timeout": None}, {"stall_timeout": 0.5}, {"stall_timeout": 30}, {"shutdown_grace": 0},
    {"release_timeout": 0.01}, {"identity": None}, {"identity": Identity("me")}, {"worker_task": lead},
    {"observer": ElectionObserver()}, {"clock": None},
])
def test_good_arguments_are_accepted(arguments: dict[str, Any]) -> None:
    DistributedMutex(lead, backend=MemoryBackend(), **arguments)


def test_a_negative_stall_timeout_no_longer_gets_as_far_as_the_election() -> None:
    """The reviewer's livelock: won term after term and gave each back as stalled."""
    clock = VirtualClock()
    store = MemoryStore(clock=clock)

    async def scenario() -> None:
        mutex = DistributedMutex(lead, backend=MemoryBackend(store), identity=Identity("a"), stall_timeout=-1)
        async with running(mutex):
            await asyncio.sleep(10)

    with pytest.raises(ConfigurationError, match=r"^stall_timeout: "):
        clock.run(scenario())
    assert store.term == 0


@pytest.mark.parametrize("instance_id", ["", " me", "me\n", "x" * 257, 42])
def test_an_identity_that_would_name_nobody_is_refused(instance_id: Any) -> None:
    with pytest.raises(ConfigurationError) as raised:
        Identity(instance_id)
    assert str(raised.value) == ("instance_id: must be 1-256 printable characters without leading or trailing "
                                 f"spaces (this instance's name), got {instance_id!r}")
