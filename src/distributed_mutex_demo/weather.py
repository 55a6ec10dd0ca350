"""Weather providers behind one interface (WeatherClient), and OpenWeatherMap's current-weather API.

Open-Meteo, the provider that needs no key, is in open_meteo.py.

OpenWeatherMap: one reading per city, or a precise error.

GET {OPENWEATHER_URL}?q=<city>&appid=<key>&units=metric answers (the fields used here):

    {"weather": [{"description": "scattered clouds", ...}],
     "main": {"temp": 28.1, "humidity": 74, ...},
     "dt": 1764151200, "name": "Hanoi", "cod": 200}

and errors as {"cod": 401, "message": "Invalid API key. ..."} with the HTTP status set.
The key travels in the query string, so no message built here ever includes the URL.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Protocol, TypeGuard

import requests

from distributed_mutex_demo.config import OPENWEATHERMAP
from distributed_mutex_demo.errors import (
    CityNotFoundError,
    WeatherAuthError,
    WeatherBackoffError,
    WeatherResponseError,
    WeatherUnavailableError,
)

# Connect quickly or not at all; a slow answer gets a little longer.
DEFAULT_TIMEOUT = (3.05, 10.0)
# Outside these the numbers are not weather but a broken feed.
TEMPERATURE_RANGE = (-100.0, 70.0)
HUMIDITY_RANGE = (0, 100)


@dataclass(frozen=True)
class Reading:
    city: str
    temperature: float
    humidity: int
    description: str
    observed_at: datetime  # UTC, when the provider says it was observed
    # Who measured it (a WEATHER_PROVIDER value). Readings made without saying so come from
    # OpenWeatherMap, the only provider before there were two.
    provider: str = OPENWEATHERMAP


class WeatherClient(Protocol):
    """A weather provider: the leader asks it for one reading per city."""

    name: str  # for people: "OpenWeatherMap", "Open-Meteo"

    def fetch(self, city: str) -> Reading:
        """The current weather in ``city``, or one of errors.py's Weather* exceptions."""
        ...

    def close(self) -> None:
        ...


class OpenWeatherClient:
    name = "OpenWeatherMap"

    def __init__(self, api_key: str, base_url: str, *, timeout: tuple[float, float] = DEFAULT_TIMEOUT,
                 session: requests.Session | None = None) -> None:
        self._api_key = api_key
        self._base_url = base_url
        self._timeout = timeout
        self._session = session or requests.Session()

    def fetch(self, city: str) -> Reading:
        params = {"q": city, "appid": self._api_key, "units": "metric"}
        try:
            response = self._session.get(self._base_url, params=params, timeout=self._timeout)
        except requests.Timeout:
            raise WeatherUnavailableError(f"no answer for {city!r} within {self._timeout[1]:g} s") from None
        except requests.RequestException as exc:
            # requests puts the URL, key included, into its messages: name the failure only.
            raise WeatherUnavailableError(f"request for {city!r} failed ({type(exc).__name__})") from None
        return self._reading(city, response)

    def close(self) -> None:
        self._session.close()

    def _reading(self, city: str, response: requests.Response) -> Reading:
        status = response.status_code
        if status == 401:
            raise WeatherAuthError("OpenWeatherMap refused the API key (401): check OPENWEATHER_API_KEY")
        if status == 404:
            raise CityNotFoundError(f"OpenWeatherMap does not know the city {city!r} (404)")
        if status == 429 or status >= 500:
            raise WeatherBackoffError(
                f"OpenWeatherMap answered {status} for {city!r}", status=status,
                retry_after=retry_after(response.headers.get("Retry-After")),
            )
        if status != 200:
            raise WeatherResponseError(f"OpenWeatherMap answered {status} for {city!r}")
        try:
            body = response.json()
        except ValueError:
            raise WeatherResponseError(f"the answer for {city!r} is not JSON") from None
        return parse_reading(city, body)


def parse_reading(city: str, body: object) -> Reading:
    """Turn a decoded current-weather answer into a Reading, or say what is wrong with it."""
    def bad(reason: str) -> WeatherResponseError:
        return WeatherResponseError(f"the answer for {city!r} is unusable: {reason}")

    if not isinstance(body, dict):
        raise bad("not a JSON object")
    main, weather, dt = body.get("main"), body.get("weather"), body.get("dt")
    if not isinstance(main, dict):
        raise bad("'main' is missing")
    temperature, humidity = main.get("temp"), main.get("humidity")
    if not is_number(temperature):
        raise bad("'main.temp' is missing or not a number")
    if not is_number(humidity):
        raise bad("'main.humidity' is missing or not a number")
    if not TEMPERATURE_RANGE[0] <= temperature <= TEMPERATURE_RANGE[1]:
        raise bad(f"temperature {temperature} °C is impossible")
    if not HUMIDITY_RANGE[0] <= humidity <= HUMIDITY_RANGE[1]:
        raise bad(f"humidity {humidity} % is impossible")
    if not isinstance(weather, list) or not weather or not isinstance(weather[0], dict):
        raise bad("'weather' is missing or empty")
    description = weather[0].get("description")
    if not isinstance(description, str) or not description.strip():
        raise bad("'weather[0].description' is missing")
    if not is_number(dt) or dt <= 0:
        raise bad("'dt' is missing or not a timestamp")
    try:
        observed_at = datetime.fromtimestamp(int(dt), tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise bad(f"'dt' {dt} is not a valid timestamp") from None
    return Reading(city=city, temperature=float(temperature), humidity=round(humidity),
                   description=description.strip()[:255], observed_at=observed_at, provider=OPENWEATHERMAP)


def is_number(value: object) -> TypeGuard[int | float]:
    """A finite int or float; a bool is not a number here, though Python counts it as an int."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def retry_after(value: str | None) -> float | None:
    try:
        seconds = float(value) if value is not None else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds <= 86400 else None
