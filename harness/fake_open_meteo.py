"""A local stand-in for Open-Meteo's geocoding and forecast APIs (these machines have no internet).

It serves, in the documented formats:

    GET /v1/search?name=<city>&count=1&language=en&format=json
        {"results": [{"id": .., "name": .., "latitude": .., "longitude": .., "elevation": ..,
                      "feature_code": "PPLC", "country_code": .., "timezone": .., ...}],
         "generationtime_ms": ..}, and for a name it does not know {"generationtime_ms": ..}
    GET /v1/forecast?latitude=..&longitude=..&current=temperature_2m,relative_humidity_2m,weather_code
        [&timeformat=unixtime] [&temperature_unit=fahrenheit]
        {"latitude": .., "longitude": .., "generationtime_ms": .., "utc_offset_seconds": 0,
         "timezone": "GMT", "timezone_abbreviation": "GMT", "elevation": ..,
         "current_units": {"time": "unixtime", "interval": "seconds", "temperature_2m": "°C",
                           "relative_humidity_2m": "%", "weather_code": "wmo code"},
         "current": {"time": .., "interval": 900, "temperature_2m": .., "relative_humidity_2m": ..,
                     "weather_code": ..}}

and errors as {"error": true, "reason": "..."} with the status set. "current" is the 15-minute
interval that started last (``interval``, settable: a test that needs a new observation per answer
sets 1). Each city, on each endpoint, can be given a script of behaviours ("ok", "not-found",
"400", "403", "429", "500", "503", "timeout", "malformed", "incomplete", "absurd", "fahrenheit");
once a script runs out the city answers "ok". Every request answered is logged.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

GEOCODING_PATH = "/v1/search"
FORECAST_PATH = "/v1/forecast"

ERROR_REASONS = {
    400: "Latitude must be in range of -90 to 90°. Given: 91.0.",
    403: "Access denied",
    429: "Minutely API request limit exceeded. Please try again in one minute.",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
# What the forecast answers, per city, cycling: (WMO code, the description the client must make of it).
WEATHER_CODES = ((3, "overcast"), (61, "slight rain"), (0, "clear sky"), (45, "fog"), (95, "thunderstorm"))


@dataclass(frozen=True)
class Request:
    endpoint: str  # "geocoding" or "forecast"
    city: str  # for a forecast: the city whose coordinates were asked for ("" if none)
    status: int
    at: float  # time.time()
    params: dict[str, str]
    observed: int | None = None  # the "current.time" served (forecast, 200)


class FakeOpenMeteo:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.timeout_seconds = 5.0
        self.interval = 900  # seconds per observation, like the real "current"
        self._scripts: dict[tuple[str, str], deque[str]] = defaultdict(deque)
        self._places: dict[str, tuple[float, float]] = {}  # city -> coordinates, kept for the session
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def geocoding_url(self) -> str:
        return self.base + GEOCODING_PATH

    @property
    def forecast_url(self) -> str:
        return self.base + FORECAST_PATH

    def env(self) -> dict[str, str]:
        """The settings that point the program here."""
        return {"OPEN_METEO_GEOCODING_URL": self.geocoding_url, "OPEN_METEO_FORECAST_URL": self.forecast_url}

    def start(self) -> FakeOpenMeteo:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def script(self, city: str, *behaviours: str, endpoint: str = "forecast") -> None:
        assert endpoint in ("geocoding", "forecast")
        with self._lock:
            self._scripts[(endpoint, city)].extend(behaviours)

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self.requests.clear()
        self.timeout_seconds = 5.0
        self.interval = 900

    def log(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def answered(self, city: str, endpoint: str | None = None, status: int | None = None) -> int:
        return sum(1 for r in self.log() if r.city == city and endpoint in (None, r.endpoint)
                   and status in (None, r.status))

    def place(self, city: str) -> tuple[float, float]:
        """The coordinates this stand-in gives ``city`` (made up, distinct per city)."""
        with self._lock:
            if city not in self._places:
                n = len(self._places)
                self._places[city] = (round(-60 + (n * 7.3125) % 120, 4), round(-170 + (n * 13.5625) % 340, 4))
            return self._places[city]

    # -- the HTTP side -----------------------------------------------------------------------

    def _next_behaviour(self, endpoint: str, city: str) -> str:
        with self._lock:
            script = self._scripts.get((endpoint, city))
            return script.popleft() if script else "ok"

    def _city_at(self, latitude: str, longitude: str) -> str:
        try:
            where = (round(float(latitude), 4), round(float(longitude), 4))
        except ValueError:
            return ""
        with self._lock:
            return next((city for city, place in self._places.items() if place == where), "")

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _geocoding_body(self, city: str) -> dict:
        latitude, longitude = self.place(city)
        seed = sum(map(ord, city))
        return {
            "results": [{
                "id": 1_000_000 + seed, "name": city, "latitude": latitude, "longitude": longitude,
                "elevation": float(seed % 300), "feature_code": "PPLC", "country_code": "VN",
                "admin1_id": 1_500_000 + seed, "timezone": "Asia/Bangkok", "population": 8_053_663,
                "country_id": 1_562_822, "country": "Vietnam", "admin1": "Hanoi",
            }],
            "generationtime_ms": 0.9,
        }

    def _forecast_body(self, city: str, latitude: float, longitude: float, query: dict[str, str]) -> dict:
        now = int(time.time())
        observed = now - now % self.interval
        seed = sum(map(ord, city))
        code = WEATHER_CODES[seed % len(WEATHER_CODES)][0]
        celsius = round(5 + seed % 25 + (observed // self.interval) % 10 / 10, 1)
        fahrenheit = query.get("temperature_unit") == "fahrenheit"
        unixtime = query.get("timeformat") == "unixtime"
        return {
            "latitude": latitude, "longitude": longitude, "generationtime_ms": 0.04, "utc_offset_seconds": 0,
            "timezone": "GMT", "timezone_abbreviation": "GMT", "elevation": 12.0,
            "current_units": {"time": "unixtime" if unixtime else "iso8601", "interval": "seconds",
                              "temperature_2m": "°F" if fahrenheit else "°C", "relative_humidity_2m": "%",
                              "weather_code": "wmo code"},
            "current": {
                "time": observed if unixtime else
                datetime.fromtimestamp(observed, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M"),
                "interval": self.interval,
                "temperature_2m": round(celsius * 9 / 5 + 32, 1) if fahrenheit else celsius,
                "relative_humidity_2m": 40 + seed % 55,
                "weather_code": code,
            },
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                if parts.path == GEOCODING_PATH:
                    return self._geocoding(query)
                if parts.path == FORECAST_PATH:
                    return self._forecast(query)
                self._send("", "", 404, {"error": True, "reason": "Not Found"}, query)

            def _geocoding(self, query: dict[str, str]) -> None:
                city = query.get("name", "")
                behaviour = fake._next_behaviour("geocoding", city)
                if behaviour == "not-found" or len(city) < 2:
                    return self._send("geocoding", city, 200, {"generationtime_ms": 0.4}, query)
                if self._failed("geocoding", city, behaviour, query):
                    return
                body = fake._geocoding_body(city)
                if behaviour == "incomplete":
                    del body["results"][0]["latitude"]
                elif behaviour == "absurd":
                    body["results"][0]["latitude"] = 123.0
                self._send("geocoding", city, 200, body, query)

            def _forecast(self, query: dict[str, str]) -> None:
                try:
                    latitude, longitude = float(query["latitude"]), float(query["longitude"])
                except (KeyError, ValueError):
                    reason = "Parameter 'latitude' and 'longitude' must have the same number of elements"
                    return self._send("forecast", "", 400, {"error": True, "reason": reason}, query)
                city = fake._city_at(query["latitude"], query["longitude"])
                behaviour = fake._next_behaviour("forecast", city)
                if self._failed("forecast", city, behaviour, query):
                    return
                body = fake._forecast_body(city, latitude, longitude, query)
                if behaviour == "incomplete":
                    del body["current"]["temperature_2m"]
                elif behaviour == "absurd":
                    body["current"]["relative_humidity_2m"] = 400
                elif behaviour == "fahrenheit":
                    body = fake._forecast_body(city, latitude, longitude, {**query, "temperature_unit": "fahrenheit"})
                self._send("forecast", city, 200, body, query)

            def _failed(self, endpoint: str, city: str, behaviour: str, query: dict[str, str]) -> bool:
                """Answer a scripted failure; False for the behaviours that give a (changed) 200."""
                if behaviour == "timeout":
                    time.sleep(fake.timeout_seconds)
                    return False  # a late but good answer, which the client has given up on
                if behaviour.isdigit():
                    status = int(behaviour)
                    self._send(endpoint, city, status, {"error": True, "reason": ERROR_REASONS.get(status, "")}, query)
                    return True
                if behaviour == "malformed":
                    self._send(endpoint, city, 200, b"<html>502 Bad Gateway</html>{", query)
                    return True
                return False

            def _send(self, endpoint: str, city: str, status: int, body: object, query: dict[str, str]) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                current = body.get("current") if isinstance(body, dict) else None
                observed = current.get("time") if isinstance(current, dict) else None
                fake._record(Request(endpoint, city, status, time.time(), query,
                                     observed if isinstance(observed, int) else None))
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        return Handler
