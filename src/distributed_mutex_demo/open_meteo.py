"""Open-Meteo: current weather without an API key (free for non-commercial use).

Two calls per reading, the first one only once per city (its coordinates do not move):

    GET {OPEN_METEO_GEOCODING_URL}?name=<city>&count=1&language=en&format=json
        {"results": [{"id": 1581130, "name": "Hanoi", "latitude": 21.0245, "longitude": 105.84117,
                      "country_code": "VN", "timezone": "Asia/Bangkok", ...}],
         "generationtime_ms": 0.9}
        and an unknown name: {"generationtime_ms": 0.5}, no "results" at all (status 200)

    GET {OPEN_METEO_FORECAST_URL}?latitude=..&longitude=..
        &current=temperature_2m,relative_humidity_2m,weather_code&timeformat=unixtime
        {"latitude": 21.0, "longitude": 105.875, "utc_offset_seconds": 0, "timezone": "GMT", ...,
         "current_units": {"time": "unixtime", "interval": "seconds", "temperature_2m": "°C",
                           "relative_humidity_2m": "%", "weather_code": "wmo code"},
         "current": {"time": 1764151200, "interval": 900, "temperature_2m": 28.1,
                     "relative_humidity_2m": 74, "weather_code": 3}}

Errors come as {"error": true, "reason": "..."} with status 400; 429 when over the free limits
(600 a minute, 5,000 an hour, 10,000 a day). "current" describes a 15-minute interval that starts at
"time": fetched again within it, it is the same observation, and the store keeps it once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import requests

from distributed_mutex_demo.config import OPEN_METEO
from distributed_mutex_demo.errors import (
    CityNotFoundError,
    WeatherBackoffError,
    WeatherResponseError,
    WeatherUnavailableError,
)
from distributed_mutex_demo.weather import (
    DEFAULT_TIMEOUT,
    HUMIDITY_RANGE,
    TEMPERATURE_RANGE,
    Reading,
    is_number,
    retry_after,
)

NAME = "Open-Meteo"
CURRENT_VARIABLES = "temperature_2m,relative_humidity_2m,weather_code"

# WMO weather interpretation codes, as Open-Meteo's documentation lists them.
WMO_DESCRIPTIONS = {
    0: "clear sky", 1: "mainly clear", 2: "partly cloudy", 3: "overcast",
    45: "fog", 48: "depositing rime fog",
    51: "light drizzle", 53: "moderate drizzle", 55: "dense drizzle",
    56: "light freezing drizzle", 57: "dense freezing drizzle",
    61: "slight rain", 63: "moderate rain", 65: "heavy rain",
    66: "light freezing rain", 67: "heavy freezing rain",
    71: "slight snow fall", 73: "moderate snow fall", 75: "heavy snow fall", 77: "snow grains",
    80: "slight rain showers", 81: "moderate rain showers", 82: "violent rain showers",
    85: "slight snow showers", 86: "heavy snow showers",
    95: "thunderstorm", 96: "thunderstorm with slight hail", 99: "thunderstorm with heavy hail",
}
# The oldest and newest observation time believed: outside this the clock field is broken.
_EARLIEST = datetime(2000, 1, 1, tzinfo=timezone.utc)
_LATEST_AHEAD = timedelta(days=2)


class OpenMeteoClient:
    name = NAME

    def __init__(self, geocoding_url: str, forecast_url: str, *,
                 timeout: tuple[float, float] = DEFAULT_TIMEOUT, session: requests.Session | None = None) -> None:
        self._geocoding_url = geocoding_url
        self._forecast_url = forecast_url
        self._timeout = timeout
        self._session = session or requests.Session()
        # City -> (latitude, longitude). Only answers that found the city are kept: a city that is
        # not found is asked again next round, so that a typo fixed upstream shows up.
        self._places: dict[str, tuple[float, float]] = {}
        self._places_lock = threading.Lock()

    def fetch(self, city: str) -> Reading:
        latitude, longitude = self.locate(city)
        body = self._get("forecast", self._forecast_url, city, {
            "latitude": f"{latitude:.4f}", "longitude": f"{longitude:.4f}", "current": CURRENT_VARIABLES,
            "timeformat": "unixtime", "temperature_unit": "celsius",
        })
        return parse_current(city, body)

    def locate(self, city: str) -> tuple[float, float]:
        """The city's coordinates: asked once, then remembered for the life of the client."""
        with self._places_lock:
            known = self._places.get(city)
        if known is not None:
            return known
        body = self._get("geocoding", self._geocoding_url, city,
                         {"name": city, "count": "1", "language": "en", "format": "json"})
        place = parse_place(city, body)
        with self._places_lock:
            self._places[city] = place
        return place

    def close(self) -> None:
        self._session.close()

    def _get(self, what: str, url: str, city: str, params: dict[str, str]) -> object:
        try:
            response = self._session.get(url, params=params, timeout=self._timeout)
        except requests.Timeout:
            raise WeatherUnavailableError(f"no answer for {city!r} within {self._timeout[1]:g} s") from None
        except requests.RequestException as exc:
            # Only the kind of failure: the same message style as OpenWeatherMap's client.
            raise WeatherUnavailableError(f"request for {city!r} failed ({type(exc).__name__})") from None
        status = response.status_code
        if status == 429 or status >= 500:
            raise WeatherBackoffError(f"{NAME} answered {status} for {city!r}", status=status,
                                      retry_after=retry_after(response.headers.get("Retry-After")))
        if status == 400:
            raise WeatherResponseError(f"{NAME} refused the {what} request for {city!r} (400: {_reason(response)})")
        if status != 200:
            raise WeatherResponseError(f"{NAME} answered {status} for {city!r}")
        try:
            return response.json()
        except ValueError:
            raise WeatherResponseError(f"the {what} answer for {city!r} is not JSON") from None


def parse_place(city: str, body: object) -> tuple[float, float]:
    """(latitude, longitude) of the first geocoding result, CityNotFoundError without one."""
    def bad(reason: str) -> WeatherResponseError:
        return WeatherResponseError(f"the geocoding answer for {city!r} is unusable: {reason}")

    if not isinstance(body, dict):
        raise bad("not a JSON object")
    results = body.get("results")
    if results is None or results == []:
        raise CityNotFoundError(f"{NAME} does not know the city {city!r}")
    if not isinstance(results, list) or not isinstance(results[0], dict):
        raise bad("'results' is not a list of places")
    latitude, longitude = results[0].get("latitude"), results[0].get("longitude")
    if not is_number(latitude) or not -90 <= latitude <= 90:
        raise bad("'results[0].latitude' is missing or not a latitude")
    if not is_number(longitude) or not -180 <= longitude <= 180:
        raise bad("'results[0].longitude' is missing or not a longitude")
    return float(latitude), float(longitude)


def parse_current(city: str, body: object, *, now: datetime | None = None) -> Reading:
    """Turn a decoded forecast answer with "current" into a Reading, or say what is wrong with it."""
    def bad(reason: str) -> WeatherResponseError:
        return WeatherResponseError(f"the forecast answer for {city!r} is unusable: {reason}")

    if not isinstance(body, dict):
        raise bad("not a JSON object")
    current = body.get("current")
    if not isinstance(current, dict):
        raise bad("'current' is missing")
    units = body.get("current_units")
    if isinstance(units, dict) and units.get("temperature_2m") not in (None, "°C"):
        # A URL that asks for Fahrenheit (temperature_unit in OPEN_METEO_FORECAST_URL) would
        # otherwise store 80 °C in Hanoi.
        raise bad(f"temperature in {units.get('temperature_2m')!r}, not °C")
    temperature, humidity = current.get("temperature_2m"), current.get("relative_humidity_2m")
    if not is_number(temperature):
        raise bad("'current.temperature_2m' is missing or not a number")
    if not is_number(humidity):
        raise bad("'current.relative_humidity_2m' is missing or not a number")
    if not TEMPERATURE_RANGE[0] <= temperature <= TEMPERATURE_RANGE[1]:
        raise bad(f"temperature {temperature} °C is impossible")
    if not HUMIDITY_RANGE[0] <= humidity <= HUMIDITY_RANGE[1]:
        raise bad(f"humidity {humidity} % is impossible")
    code = current.get("weather_code")
    if not is_number(code) or code != int(code) or code < 0:
        raise bad("'current.weather_code' is missing or not a WMO code")
    observed_at = _observed_at(current.get("time"), body.get("utc_offset_seconds", 0), bad)
    latest = (now or datetime.now(timezone.utc)) + _LATEST_AHEAD
    if not _EARLIEST <= observed_at <= latest:
        raise bad(f"observation time {observed_at:%Y-%m-%d %H:%M} UTC is impossible")
    description = WMO_DESCRIPTIONS.get(int(code), f"weather code {int(code)}")
    return Reading(city=city, temperature=float(temperature), humidity=round(humidity),
                   description=description, observed_at=observed_at, provider=OPEN_METEO)


def _observed_at(value: object, offset: object, bad: Callable[[str], WeatherResponseError]) -> datetime:
    """"time" as asked (timeformat=unixtime: seconds, UTC), or Open-Meteo's default: local
    ISO 8601 without a zone, "2026-11-26T11:30", whose offset is "utc_offset_seconds"."""
    if is_number(value):
        try:
            return datetime.fromtimestamp(int(value), tz=timezone.utc)
        except (OverflowError, OSError, ValueError):
            raise bad(f"'current.time' {value} is not a valid timestamp") from None
    if isinstance(value, str):
        if not is_number(offset) or abs(offset) > 86400:
            raise bad("'utc_offset_seconds' is not a number of seconds")
        try:
            local = datetime.fromisoformat(value)
        except ValueError:
            raise bad(f"'current.time' {value[:40]!r} is not a time") from None
        try:
            if local.tzinfo is not None:
                return local.astimezone(timezone.utc)
            return (local - timedelta(seconds=int(offset))).replace(tzinfo=timezone.utc)
        except OverflowError:
            raise bad(f"'current.time' {value[:40]!r} is not a time") from None
    raise bad("'current.time' is missing")


def _reason(response: requests.Response) -> str:
    """Open-Meteo's own words for a 400 ({"error": true, "reason": ...}), kept short."""
    try:
        body = response.json()
    except ValueError:
        return "no reason given"
    reason = body.get("reason") if isinstance(body, dict) else None
    if not isinstance(reason, str) or not reason.strip():
        return "no reason given"
    return " ".join(reason.split())[:200]
