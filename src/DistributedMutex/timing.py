"""The election's timing, and the invariants between its numbers, checked in one place.

    lease_duration  how long the storage keeps the lease after the last acquire/renew
    renew_interval  how often the leader renews while all is well
    acquire_interval how often a non-leader tries to take the lease (and a failed renewal is retried)
    safety_margin   how long before the lease can end the leader stops acting on its own

The leader acts only until ``sent_at + lease_duration - safety_margin`` of its last successful
renewal (its *local deadline*), measured on a monotonic clock. For a renewal to be retried at least
once before that deadline, two renew intervals must fit in it:

    2 * renew_interval <= lease_duration - safety_margin
    0 < acquire_interval <= lease_duration
"""

from __future__ import annotations

from dataclasses import dataclass

from DistributedMutex.errors import ConfigurationError

AZURE_MIN_LEASE = 15
AZURE_MAX_LEASE = 60


@dataclass(frozen=True)
class ElectionTiming:
    lease_duration: float = 15
    renew_interval: float = 5
    acquire_interval: float = 2
    safety_margin: float = 2

    def __post_init__(self) -> None:
        if self.safety_margin <= 0:
            raise ConfigurationError("safety_margin", f"must be positive, got {self.safety_margin}")
        if self.lease_duration <= self.safety_margin:
            raise ConfigurationError(
                "LEASE_DURATION",
                f"must be longer than the {self.safety_margin:g} s safety margin",
            )
        if self.renew_interval <= 0:
            raise ConfigurationError("RENEW_INTERVAL", "must be a positive number of seconds")
        if 2 * self.renew_interval > self.lease_duration - self.safety_margin:
            limit = (self.lease_duration - self.safety_margin) / 2
            raise ConfigurationError(
                "RENEW_INTERVAL",
                f"{self.renew_interval:g} s is too close to LEASE_DURATION={self.lease_duration:g} s:"
                f" it must be at most (LEASE_DURATION - {self.safety_margin:g} s safety margin) / 2"
                f" = {limit:g} s, so that a failed renewal is retried before the lease ends",
            )
        if not 0 < self.acquire_interval <= self.lease_duration:
            raise ConfigurationError(
                "ACQUIRE_INTERVAL",
                f"{self.acquire_interval:g} s must be above 0 and at most"
                f" LEASE_DURATION={self.lease_duration:g} s",
            )

    @property
    def acting_window(self) -> float:
        """How long after a successful renewal was sent the leader may go on acting."""
        return self.lease_duration - self.safety_margin
