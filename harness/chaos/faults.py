"""The faults, one per round. Each takes the harness and the leader's slot, puts its fault in place,
holds it, heals it, and returns (victim, when the fault began, when it was healed)."""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from harness.chaos.model import FAULTS, hold_until

if TYPE_CHECKING:
    from harness.chaos.cluster import Chaos, Slot


def kill(chaos: Chaos, leader: Slot) -> tuple[str, float, float]:
    instance = chaos.current(leader)
    at = instance.signal(signal.SIGKILL)
    instance.wait(10)
    leader.deaths[instance.name] = at
    chaos.wait_for_leader(chaos.s.recovery_bound + 5, "no new leader after the kill", not_=instance.name)
    leader.start(chaos.env(leader), chaos.workdir)
    return instance.name, at, at


def freeze(chaos: Chaos, leader: Slot) -> tuple[str, float, float]:
    instance = chaos.current(leader)
    at = instance.signal(signal.SIGSTOP)
    try:
        chaos.wait_for_leader(chaos.s.recovery_bound + 5, "no new leader while the old one is frozen",
                              not_=instance.name)
        hold_until(at + chaos.s.lease + 1)  # the fault itself: frozen for longer than the lease
    finally:
        healed = instance.signal(signal.SIGCONT)
    chaos.wait_for_stop(instance.name, 10)
    return instance.name, at, healed


def cut(chaos: Chaos, leader: Slot) -> tuple[str, float, float]:
    instance = chaos.current(leader)
    at = time.monotonic()
    leader.proxy.blackhole()
    try:
        chaos.wait_for_leader(chaos.s.recovery_bound + 5, "no new leader while the old one is cut off",
                              not_=instance.name)
        hold_until(at + chaos.s.lease + 1)
    finally:
        leader.proxy.heal()
    healed = time.monotonic()
    chaos.wait_for_stop(instance.name, 10)
    return instance.name, at, healed


def slow(chaos: Chaos, leader: Slot) -> tuple[str, float, float]:
    at = time.monotonic()
    leader.proxy.latency = chaos.s.slow_latency
    try:
        hold_until(at + 3 * chaos.s.renew)
    finally:
        leader.proxy.latency = 0.0
    return chaos.current(leader).name, at, time.monotonic()


def server_restart(chaos: Chaos, leader: Slot) -> tuple[str, float, float]:
    """The election's server stopped for 2 s and started again: Azurite on its data; PostgreSQL
    stopped as a crash would (-m immediate) and recovered from its WAL; Redis without persistence,
    so the lease key and the term counter are gone."""
    at = time.monotonic()
    chaos.backend.restart_server()
    return chaos.current(leader).name, at, time.monotonic()


def conn_kill(chaos: Chaos, leader: Slot) -> tuple[str, float, float]:
    """The leader's connections killed by the server (pg_terminate_backend, CLIENT KILL), found by
    the leader's proxy's upstream ports; then two renewals' time for it to reconnect. A kill that
    finds no connection is a violation: the round would prove nothing."""
    instance = chaos.current(leader)
    at = time.monotonic()
    killed = chaos.backend.kill_connections(leader)
    chaos.last_killed = killed
    hold_until(at + 2 * chaos.s.renew)
    return instance.name, at, at


def mysql_down(chaos: Chaos, leader: Slot) -> tuple[str, float, float]:
    proxy = chaos.backend.mysql_proxy
    assert proxy is not None, "mysql-down is a fault of the rounds whose store is MySQL"
    at = time.monotonic()
    proxy.down()
    try:
        hold_until(at + chaos.s.mysql_outage)
    finally:
        proxy.up()
    return chaos.current(leader).name, at, time.monotonic()


def clock_jump(chaos: Chaos, leader: Slot) -> tuple[str, float, float]:
    at = time.monotonic()
    for offset in (chaos.s.clock_jump, -chaos.s.clock_jump):
        for slot in chaos.slots:
            slot.shift_clock(offset)
        hold_until(time.monotonic() + 2 * chaos.s.renew)
    for slot in chaos.slots:
        slot.shift_clock(0)
    return chaos.current(leader).name, at, time.monotonic()


Fault = Callable[["Chaos", "Slot"], tuple[str, float, float]]
ACTIONS: dict[str, Fault] = {"kill": kill, "freeze": freeze, "cut": cut, "slow": slow,
                             "azurite-restart": server_restart, "server-restart": server_restart,
                             "conn-kill": conn_kill, "mysql-down": mysql_down,
                             "clock-jump": clock_jump}
assert set(ACTIONS) == set(FAULTS), "every fault has its action"
