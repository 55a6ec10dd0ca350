"""The election's timing, and the invariants between its numbers, checked in one place.

    lease_duration   how long the storage keeps the lease after the last acquire/renew
    renew_interval   how often the leader renews while all is well
    acquire_interval how often a non-leader tries to take the lease (and a failed renewal is retried)
    safety_margin    how long before the lease can end the leader stops acting on its own

The leader acts only until ``sent_at + lease_duration - safety_margin`` of its last successful
renewal (its *local deadline*), measured on a monotonic clock. For a renewal to be retried at least
once before that deadline, two renew intervals must fit in it:

    2 * renew_interval <= lease_duration - safety_margin
    0 < acquire_interval <= lease_duration

Each backend states the timing its guarantee implies (``ElectionBackend.default_timing()``);
``timing_for`` checks a timing given explicitly against it, when DistributedMutex is built: no
longer a lease than the backend's, and no smaller a safety margin.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from DistributedMutex.errors import ConfigurationError

if TYPE_CHECKING:
    from DistributedMutex.backend import ElectionBackend

TIMING_ARGUMENTS = ("lease_duration", "renew_interval", "acquire_interval", "safety_margin")


@dataclass(frozen=True)
class ElectionTiming:
    lease_duration: float = 15
    renew_interval: float = 5
    acquire_interval: float = 2
    safety_margin: float = 2

    def __post_init__(self) -> None:
        check_timing_values(self.lease_duration, self.renew_interval, self.acquire_interval, self.safety_margin)

    @property
    def acting_window(self) -> float:
        """How long after a successful renewal was sent the leader may go on acting."""
        return self.lease_duration - self.safety_margin


def check_timing_values(lease_duration: float, renew_interval: float, acquire_interval: float,
                        safety_margin: float, *, names: Mapping[str, str] | None = None) -> None:
    """Raise ConfigurationError, naming the argument, if these numbers break an invariant.

    ``names``: what the caller calls each argument (TIMING_ARGUMENTS) in its own configuration,
    for a program that reads them from settings of its own; by default the argument's name."""
    lease_name, renew_name, acquire_name, margin_name = (
        (names or {}).get(argument, argument) for argument in TIMING_ARGUMENTS)
    for name, value in zip((lease_name, renew_name, acquire_name, margin_name),
                           (lease_duration, renew_interval, acquire_interval, safety_margin), strict=True):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigurationError(name, f"must be a number of seconds, got {value!r}")
        if not math.isfinite(value):
            raise ConfigurationError(name, f"must be a finite number of seconds, got {value}")
    if safety_margin <= 0:
        raise ConfigurationError(margin_name, f"must be positive, got {safety_margin:g}")
    if lease_duration <= safety_margin:
        raise ConfigurationError(
            lease_name, f"{lease_duration:g} s must be longer than the {safety_margin:g} s {margin_name}")
    if renew_interval <= 0:
        raise ConfigurationError(renew_name, f"must be a positive number of seconds, got {renew_interval:g}")
    if 2 * renew_interval > lease_duration - safety_margin:
        limit = (lease_duration - safety_margin) / 2
        raise ConfigurationError(
            renew_name,
            f"{renew_interval:g} s is too close to {lease_name}={lease_duration:g} s: it must be at most"
            f" ({lease_name} - {safety_margin:g} s {margin_name}) / 2 = {limit:g} s, so that a failed renewal"
            " is retried before the lease ends",
        )
    if not 0 < acquire_interval <= lease_duration:
        raise ConfigurationError(
            acquire_name, f"{acquire_interval:g} s must be above 0 and at most {lease_name}={lease_duration:g} s")


def timing_for(backend: ElectionBackend, timing: ElectionTiming | None) -> ElectionTiming:
    """The timing DistributedMutex runs with: the backend's own when none is given; one given
    explicitly only if the backend's guarantee can honour it, or ConfigurationError at once.

    The rule: the loop acts until ``min(lease, timing.lease_duration) - safety_margin`` after each
    renewal, so a timing whose lease_duration is shorter than the backend's lease is merely careful;
    a longer one would renew too seldom for the lease the backend hands out (every renewal would
    find the lease older than the loop thinks: the leader would step down at each acquire, or not
    renew in time). A smaller safety_margin than the backend's own is refused too: the leader would
    act on closer to the lease's end than the backend's guarantee allows. The loop also checks each
    lease it is given, since a storage may grant less than the backend asked for (a ZooKeeper
    server clamps the session timeout)."""
    own = backend.default_timing()
    if timing is None:
        return own
    if not isinstance(timing, ElectionTiming):
        raise ConfigurationError("timing", f"must be an ElectionTiming, got {type(timing).__name__}")
    if timing.lease_duration > own.lease_duration:
        basis = getattr(backend, "lease_basis", None)
        raise ConfigurationError(
            "timing", f"lease_duration={timing.lease_duration:g} s is longer than the {own.lease_duration:g} s lease "
                      f"{type(backend).__name__} can guarantee" + (f" ({basis})" if isinstance(basis, str) else ""))
    # The margin absorbs what the lease's arithmetic cannot see (a thread scheduled late, clocks
    # running at slightly different rates, an answer in flight): each backend states how much its
    # guarantee needs. A shorter lease_duration does not make up for less: the storage may grant a
    # lease shorter still (a ZooKeeper server clamps the session timeout), and then the leader stops
    # acting only safety_margin before that lease can end.
    if timing.safety_margin < own.safety_margin:
        raise ConfigurationError(
            "timing", f"safety_margin={timing.safety_margin:g} s is less than the {own.safety_margin:g} s safety "
                      f"margin {type(backend).__name__} needs")
    return timing
