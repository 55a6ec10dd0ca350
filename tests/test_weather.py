"""The OpenWeatherMap client (real requests code) against the local stand-in, and the leader's
fetch loop surviving every kind of API error."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distributed_mutex_demo.app import WeatherApp
from distributed_mutex_demo.config import MySQLSettings
from distributed_mutex_demo.errors import (
    CityNotFoundError,
    WeatherAuthError,
    WeatherBackoffError,
    WeatherError,
    WeatherResponseError,
    WeatherUnavailableError,
)
from distributed_mutex_demo.stores.mysql import WeatherStore
from distributed_mutex_demo.weather import OpenWeatherClient, parse_reading
from harness.fake_openweather import FakeOpenWeather
from harness.services import free_port
from support.leader_loop import run_leader_until as run_leader


def client(weather: FakeOpenWeather, key: str | None = None, timeout: float = 2.0) -> OpenWeatherClient:
    return OpenWeatherClient(key or weather.api_key, weather.url, timeout=(1.0, timeout))


def test_a_reading_from_the_documented_format(weather: FakeOpenWeather) -> None:
    reading = client(weather).fetch("Hanoi")
    assert reading.city == "Hanoi"
    assert reading.description == "scattered clouds"
    assert 0 <= reading.humidity <= 100
    assert reading.observed_at.tzinfo is timezone.utc
    assert abs(reading.observed_at - datetime.now(timezone.utc)).total_seconds() < 60
    assert weather.requests[-1].appid == weather.api_key


@pytest.mark.parametrize(("behaviour", "error", "message"), [
    ("404", CityNotFoundError, "OpenWeatherMap does not know the city 'Hanoi' (404)"),
    ("429", WeatherBackoffError, "OpenWeatherMap answered 429 for 'Hanoi'"),
    ("500", WeatherBackoffError, "OpenWeatherMap answered 500 for 'Hanoi'"),
    ("503", WeatherBackoffError, "OpenWeatherMap answered 503 for 'Hanoi'"),
    ("malformed", WeatherResponseError, "the answer for 'Hanoi' is not JSON"),
    ("incomplete", WeatherResponseError, "'main.temp' is missing or not a number"),
    ("absurd", WeatherResponseError, "humidity 400 % is impossible"),
    ("timeout", WeatherUnavailableError, "no answer for 'Hanoi' within 0.5 s"),
])
def test_each_api_error_is_a_precise_exception(weather: FakeOpenWeather, behaviour: str,
                                              error: type[WeatherError], message: str) -> None:
    weather.timeout_seconds = 1.5
    weather.script("Hanoi", behaviour)
    with pytest.raises(error) as caught:
        client(weather, timeout=0.5).fetch("Hanoi")
    assert message in str(caught.value)
    assert weather.api_key not in str(caught.value)


def test_429_carries_retry_after(weather: FakeOpenWeather) -> None:
    weather.script("Hanoi", "429")
    with pytest.raises(WeatherBackoffError) as caught:
        client(weather).fetch("Hanoi")
    assert caught.value.retry_after == 1.0


def test_wrong_key_names_the_setting_never_the_key(weather: FakeOpenWeather) -> None:
    with pytest.raises(WeatherAuthError) as caught:
        client(weather, key="WRONG-KEY-0042").fetch("Hanoi")
    assert "check OPENWEATHER_API_KEY" in str(caught.value)
    assert "WRONG-KEY-0042" not in str(caught.value)


def test_unreachable_api_never_shows_the_key() -> None:
    dead = OpenWeatherClient("SECRET-KEY-0099", f"http://127.0.0.1:{free_port()}/data/2.5/weather",
                             timeout=(0.5, 0.5))
    with pytest.raises(WeatherUnavailableError) as caught:
        dead.fetch("Hanoi")
    assert "SECRET-KEY-0099" not in str(caught.value)
    assert "request for 'Hanoi' failed (ConnectionError)" in str(caught.value)


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                        st.sampled_from(["main", "temp", "humidity", "weather", "description", "dt"]),
                        inner, max_size=4), max_leaves=12))
def test_any_decoded_answer_gives_a_reading_or_a_response_error(body: object) -> None:
    try:
        reading = parse_reading("Hanoi", body)
    except WeatherResponseError:
        return
    assert 0 <= reading.humidity <= 100


# -- the leader's loop -----------------------------------------------------------------------------

async def run_leader_until(app: WeatherApp, term: int, done, timeout: float) -> None:
    task = await run_leader(app, done, timeout, term=term)
    assert not task.done() or task.cancelled(), "the leader loop ended by itself"


def make_app(weather: FakeOpenWeather, mysql_server, database: str, cities: tuple[str, ...],
             key: str | None = None) -> tuple[WeatherApp, WeatherStore]:
    store = WeatherStore(MySQLSettings(mysql_server.host, mysql_server.port, mysql_server.user,
                                       mysql_server.password, database))
    app = WeatherApp(client(weather, key=key, timeout=0.5), store, cities, fetch_interval=1,
                     read_interval=1)
    return app, store


@pytest.mark.parametrize(("behaviour", "logged"), [
    ("404", "OpenWeatherMap does not know the city 'Atlantis' (404): skipped"),
    ("429", "OpenWeatherMap answered 429 for 'Atlantis': pausing this round"),
    ("500", "OpenWeatherMap answered 500 for 'Atlantis': pausing this round"),
    ("503", "OpenWeatherMap answered 503 for 'Atlantis': pausing this round"),
    ("timeout", "OpenWeatherMap unavailable: no answer for 'Atlantis' within 0.5 s"),
    ("malformed", "the answer for 'Atlantis' is not JSON: skipped"),
    ("incomplete", "'main.temp' is missing or not a number: skipped"),
    ("absurd", "humidity 400 % is impossible: skipped"),
])
def test_each_api_error_is_logged_once_and_the_loop_goes_on(
        weather, mysql_server, database, caplog, behaviour: str, logged: str) -> None:
    weather.timeout_seconds = 1.0
    weather.script("Atlantis", behaviour)
    app, store = make_app(weather, mysql_server, database, ("Atlantis", "Hanoi"))
    caplog.set_level(logging.INFO, logger="distributed_mutex_demo")

    def both_cities_stored() -> bool:
        return {r.city for r in store.latest()} == {"Atlantis", "Hanoi"}

    asyncio.run(run_leader_until(app, 1, both_cities_stored, timeout=15))
    messages = [r.getMessage() for r in caplog.records]
    assert sum(logged in m for m in messages) == 1, messages
    assert not any(r.exc_info for r in caplog.records)
    store.close()


def test_a_wrong_key_is_logged_and_survived(weather, mysql_server, database, caplog) -> None:
    app, store = make_app(weather, mysql_server, database, ("Hanoi",), key="WRONG-KEY-0042")
    caplog.set_level(logging.INFO, logger="distributed_mutex_demo")
    asyncio.run(run_leader_until(app, 1, lambda: weather.answered("Hanoi", 401) >= 2, timeout=15))
    messages = [r.getMessage() for r in caplog.records]
    assert any("OpenWeatherMap refused the API key (401): check OPENWEATHER_API_KEY" in m for m in messages)
    assert not any("WRONG-KEY-0042" in m for m in messages)
    store.close()
