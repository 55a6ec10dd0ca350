"""The simulated station: made-up but plausible weather, for when no weather service can be reached.

A demo run offline (a laptop on a train, a firewalled machine, CI) would otherwise write nothing:
no leader's writes, no workers' reads, no fencing refusals to see. With WEATHER_SIMULATION=auto
(the default) the leader switches to this station when the configured provider cannot be reached,
says so once, keeps asking the provider at its back-off interval and uses it again as soon as it
answers (FallbackSchedule); WEATHER_SIMULATION=always uses the station alone, =off never.

Every reading is labelled: its provider is ``simulated`` (the store's provider column, the
workers' table) and its description starts with ``simulated:``. Values are a pure function of
(city, time), so that a test can recompute what was stored:

    temperature = the city's yearly mean (from a small table of climates, or from its latitude)
                  + a seasonal swing (opposite in the southern hemisphere)
                  + a daily cycle peaking mid-afternoon local (solar) time
                  + slow noise (a few sines of hours-long periods, phases from the city's name)
    humidity    = highest at dawn, lowest in the afternoon, plus slow noise
    wind, sky   = slow noise; rain when it is cloudy and humid (snow below 1 °C)
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from distributed_mutex_demo.config import SIMULATED
from distributed_mutex_demo.weather import Reading

log = logging.getLogger(__name__)

NAME = "the simulated station"
DESCRIPTION_PREFIX = "simulated: "


@dataclass(frozen=True)
class Climate:
    latitude: float
    longitude: float
    mean: float  # °C over the year
    swing: float  # °C between the yearly mean and the warmest month's


# A few cities' rough climates (yearly mean, half the range between the coldest and warmest month).
CLIMATES: dict[str, Climate] = {
    "hanoi": Climate(21.0, 105.8, 23.6, 6.5),
    "ho chi minh city": Climate(10.8, 106.7, 27.5, 1.5),
    "saigon": Climate(10.8, 106.7, 27.5, 1.5),
    "da nang": Climate(16.1, 108.2, 25.8, 4.0),
    "tokyo": Climate(35.7, 139.7, 15.8, 10.5),
    "new york": Climate(40.7, -74.0, 13.0, 12.0),
    "london": Climate(51.5, -0.1, 11.3, 7.0),
    "paris": Climate(48.9, 2.4, 12.3, 8.0),
    "berlin": Climate(52.5, 13.4, 10.3, 9.5),
    "moscow": Climate(55.8, 37.6, 5.8, 14.0),
    "singapore": Climate(1.3, 103.8, 27.5, 1.0),
    "sydney": Climate(-33.9, 151.2, 18.0, 5.0),
    "cairo": Climate(30.0, 31.2, 22.3, 7.5),
    "mumbai": Climate(19.1, 72.9, 27.2, 2.5),
    "beijing": Climate(39.9, 116.4, 12.9, 15.0),
    "san francisco": Climate(37.8, -122.4, 14.6, 3.0),
    "los angeles": Climate(34.1, -118.2, 18.6, 4.5),
    "reykjavik": Climate(64.1, -21.9, 4.7, 5.5),
    "dubai": Climate(25.3, 55.3, 28.0, 7.5),
    "sao paulo": Climate(-23.6, -46.6, 19.5, 3.5),
}
# A city not in the table: a temperate climate, its longitude (hence its local time) from its name.
DEFAULT_MEAN, DEFAULT_SWING = 15.0, 6.0
DAILY_SWING = 4.0  # °C between the daily mean and the mid-afternoon peak
WARMEST_DAY = 200  # day of the year, northern hemisphere (mid-July)


def _phases(city: str) -> list[float]:
    """Stable per-city numbers in [0, 1): the same on every machine and run (not Python's hash)."""
    digest = hashlib.sha256(city.strip().lower().encode()).digest()
    return [int.from_bytes(digest[i:i + 4], "big") / 2 ** 32 for i in range(0, 32, 4)]


def _climate(city: str, phases: list[float]) -> Climate:
    known = CLIMATES.get(" ".join(city.strip().lower().split()))
    return known or Climate(45.0, phases[7] * 360 - 180, DEFAULT_MEAN, DEFAULT_SWING)


def _slow(seconds: float, phases: list[float], periods_hours: tuple[float, ...]) -> float:
    """Noise in about [-1, 1] that drifts over hours: the mean of a few sines."""
    total = sum(math.sin(2 * math.pi * (seconds / (hours * 3600) + phase))
                for hours, phase in zip(periods_hours, phases, strict=False))
    return total / len(periods_hours)


def simulate(city: str, at: datetime) -> Reading:
    """The simulated station's reading for ``city`` at ``at`` (UTC, kept to the whole second)."""
    at = at.astimezone(timezone.utc).replace(microsecond=0)
    phases = _phases(city)
    climate = _climate(city, phases)
    seconds = at.timestamp()
    day_of_year = at.timetuple().tm_yday
    seasonal = climate.swing * math.cos(2 * math.pi * (day_of_year - WARMEST_DAY) / 365.25)
    if climate.latitude < 0:
        seasonal = -seasonal
    local_hour = (at.hour + at.minute / 60 + climate.longitude / 15) % 24
    daily = math.cos(2 * math.pi * (local_hour - 15) / 24)  # 1 at 15:00, -1 at 03:00
    temperature = climate.mean + seasonal + DAILY_SWING * daily + 1.5 * _slow(seconds, phases[0:3], (5.3, 11.7, 29.0))
    humidity = 70 - 15 * daily + 12 * _slow(seconds, phases[3:5], (7.1, 19.0))
    clouds = (_slow(seconds, phases[2:5], (3.7, 9.4, 23.0)) + 1) / 2  # 0 clear .. 1 overcast
    wind = 1.0 + 7.0 * (_slow(seconds, phases[4:7], (2.9, 6.3, 17.0)) + 1) / 2  # m/s
    humidity = min(100.0, max(5.0, humidity + 15 * (clouds - 0.5)))
    return Reading(city=city, temperature=round(temperature, 1), humidity=round(humidity),
                   description=f"{DESCRIPTION_PREFIX}{_sky(clouds, humidity, temperature)}, wind {wind:.0f} m/s",
                   observed_at=at, provider=SIMULATED)


def _sky(clouds: float, humidity: float, temperature: float) -> str:
    if clouds > 0.8 and humidity > 80:
        return "light snow" if temperature < 1 else "light rain"
    if clouds > 0.65:
        return "overcast"
    if clouds > 0.4:
        return "partly cloudy"
    if clouds > 0.2:
        return "mainly clear"
    return "clear sky"


class FallbackSchedule:
    """When the leader asks the real provider and when it uses the simulated station instead.

    auto:   the provider, until it cannot be reached; then the station, asking the provider again
            after the back-off (the fetch interval doubling, up to ``max_backoff``), and back to it
            as soon as it answers. Each switch is logged once, as one line.
    always: the station only; the provider is never asked.
    off:    the provider only (what app.py did before: back off and write nothing meanwhile).
    Lives as long as the process, so a leader elected again keeps its place in the back-off."""

    def __init__(self, mode: str, provider: str, *, fetch_interval: float, max_backoff: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.mode = mode
        self._provider = provider
        self._fetch_interval = fetch_interval
        self._max_backoff = max(max_backoff, fetch_interval)
        self._clock = clock
        self._simulating = mode == "always"
        self._failed_tries = 0
        self._retry_at = 0.0
        self._told_always = False

    @property
    def enabled(self) -> bool:
        return self.mode != "off"

    @property
    def simulating(self) -> bool:
        return self._simulating

    def ask_provider(self) -> bool:
        """Whether this round asks the real provider (otherwise: the station alone)."""
        if self.mode == "always":
            if not self._told_always:
                log.info("weather from %s (WEATHER_SIMULATION=always): values are made up, not measured", NAME)
                self._told_always = True
            return False
        return not self._simulating or self._clock() >= self._retry_at

    def unreachable(self, cause: str) -> None:
        """The provider could not be reached this round: use the station until the next try."""
        self._failed_tries += 1
        retry_in = min(self._fetch_interval * 2 ** self._failed_tries, self._max_backoff)
        self._retry_at = self._clock() + retry_in
        if not self._simulating:
            self._simulating = True
            log.warning("%s unavailable: %s: using %s (made-up values, provider 'simulated') until it answers; "
                        "asking it again in %.0f s, then less often (every %.0f s at most)",
                        self._provider, cause, NAME, retry_in, self._max_backoff)
        else:
            log.debug("%s still unavailable (%s): next try in %.0f s", self._provider, cause, retry_in)

    def answered(self) -> None:
        """The provider answered: real readings from now on."""
        self._failed_tries = 0
        if self._simulating:
            self._simulating = False
            log.info("%s answers again: real readings from now on, %s is off", self._provider, NAME)
