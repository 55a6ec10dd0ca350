"""A local stand-in for OpenWeatherMap's current-weather API (these machines have no internet).

It serves GET /data/2.5/weather?q=<city>&appid=<key>&units=metric in the documented format, with
the documented error bodies, and keeps a log of every request it answered. Each city can be given
a script of behaviours ("ok", "404", "429", "500", "503", "timeout", "malformed", "incomplete",
"absurd"); once a script runs out the city answers "ok".
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

PATH = "/data/2.5/weather"

ERROR_BODIES = {
    401: {"cod": 401, "message": "Invalid API key. Please see https://openweathermap.org/faq#error401 for more info."},
    404: {"cod": "404", "message": "city not found"},
    429: {"cod": 429, "message": "Your account is temporary blocked due to exceeding of requests limitation of "
                                 "your subscription type."},
    500: {"cod": "500", "message": "Internal error"},
    503: {"cod": "503", "message": "Service Unavailable"},
}


@dataclass(frozen=True)
class Request:
    city: str
    status: int
    at: float  # time.time()
    appid: str
    client: str = ""  # the first path segment of a url_for(client) URL
    mono: float = 0.0  # time.monotonic() when the request was read
    dt: int | None = None  # the observation time served (200 answers)


class FakeOpenWeather:
    def __init__(self, api_key: str = "test-api-key-1234", host: str = "127.0.0.1") -> None:
        """``host``: the address to listen on (the partition harness: its bridge's address, which
        its network namespaces reach)."""
        self.api_key = api_key
        self.host = host
        self.requests: list[Request] = []
        self.timeout_seconds = 5.0
        self.fixed_dt: int | None = None  # same observation time for every answer, if set
        self._scripts: dict[str, deque[str]] = defaultdict(deque)
        self._counts: dict[str, int] = defaultdict(int)
        self._last_dt: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, 0), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self._server.server_address[1]}{PATH}"

    def url_for(self, client: str) -> str:
        """A URL whose requests are logged as coming from ``client`` (the chaos harness gives each
        instance its own, so the log says who fetched without trusting the instances)."""
        return f"http://{self.host}:{self._server.server_address[1]}/{client}{PATH}"

    def log(self) -> list[Request]:
        with self._lock:
            return list(self.requests)

    def start(self) -> FakeOpenWeather:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def script(self, city: str, *behaviours: str) -> None:
        with self._lock:
            self._scripts[city].extend(behaviours)

    def reset(self) -> None:
        with self._lock:
            self._scripts.clear()
            self.requests.clear()
            self.fixed_dt = None

    def answered(self, city: str, status: int | None = None) -> int:
        with self._lock:
            return sum(1 for r in self.requests if r.city == city and (status is None or r.status == status))

    # -- the HTTP side -----------------------------------------------------------------------

    def _next_behaviour(self, city: str) -> str:
        with self._lock:
            script = self._scripts.get(city)
            return script.popleft() if script else "ok"

    def _record(self, city: str, status: int, appid: str, client: str, received: float, dt: int | None) -> None:
        with self._lock:
            self.requests.append(Request(city, status, time.time(), appid, client, received, dt))

    def _observation(self, city: str) -> dict:
        with self._lock:
            self._counts[city] += 1
            n = self._counts[city]
            # A new observation per answer, near now: strictly increasing per city.
            self._last_dt[city] = max(int(time.time()), self._last_dt[city] + 1)
            dt = self.fixed_dt if self.fixed_dt is not None else self._last_dt[city]
        seed = sum(map(ord, city))
        return {
            "coord": {"lon": 105.84, "lat": 21.02},
            "weather": [{"id": 802, "main": "Clouds", "description": "scattered clouds", "icon": "03d"}],
            "base": "stations",
            "main": {"temp": round(10 + seed % 20 + n / 10, 2), "feels_like": 20.0, "temp_min": 19.0,
                     "temp_max": 22.0, "pressure": 1012, "humidity": 40 + seed % 50},
            "visibility": 10000,
            "wind": {"speed": 3.6, "deg": 120},
            "clouds": {"all": 40},
            "dt": dt,
            "sys": {"country": "VN", "sunrise": 1763938000, "sunset": 1763978000},
            "timezone": 25200,
            "id": seed,
            "name": city,
            "cod": 200,
        }

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                self.received = time.monotonic()
                parts = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                city, appid = query.get("q", ""), query.get("appid", "")
                self.client, _, path = parts.path.rpartition(PATH)
                self.client = self.client.strip("/")
                if path or not parts.path.endswith(PATH) or "/" in self.client or not city:
                    return self._send(city, 400, {"cod": "400", "message": "Nothing to geocode"})
                if appid != fake.api_key:
                    return self._send(city, 401, ERROR_BODIES[401])
                behaviour = fake._next_behaviour(city)
                if behaviour == "timeout":
                    time.sleep(fake.timeout_seconds)
                    return self._send(city, 200, fake._observation(city))
                if behaviour.isdigit():
                    status = int(behaviour)
                    headers = {"Retry-After": "1"} if status == 429 else {}
                    return self._send(city, status, ERROR_BODIES.get(status, {"cod": status}), headers)
                if behaviour == "malformed":
                    return self._send(city, 200, b"<html>upstream error</html>{")
                body = fake._observation(city)
                if behaviour == "incomplete":
                    del body["main"]["temp"]
                elif behaviour == "absurd":
                    body["main"]["humidity"] = 400
                self._send(city, 200, body)

            def _send(self, city: str, status: int, body: object, headers: dict | None = None) -> None:
                data = body if isinstance(body, bytes) else json.dumps(body).encode()
                dt = body.get("dt") if isinstance(body, dict) and status == 200 else None
                fake._record(city, status, query_appid(self.path), self.client, self.received, dt)
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(data)))
                    for name, value in (headers or {}).items():
                        self.send_header(name, value)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        return Handler


def query_appid(path: str) -> str:
    return parse_qs(urlsplit(path).query).get("appid", [""])[0]
