"""The Open-Meteo client (real requests code) against the local stand-in serving the documented
answers: geocoding once per city, the current weather, the WMO codes, and every kind of error."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from distributed_mutex_demo.errors import (
    CityNotFoundError,
    WeatherBackoffError,
    WeatherError,
    WeatherResponseError,
    WeatherUnavailableError,
)
from distributed_mutex_demo.open_meteo import WMO_DESCRIPTIONS, OpenMeteoClient, parse_current, parse_place
from harness.fake_open_meteo import WEATHER_CODES, FakeOpenMeteo
from harness.services import free_port


def client(fake: FakeOpenMeteo, timeout: float = 2.0) -> OpenMeteoClient:
    return OpenMeteoClient(fake.geocoding_url, fake.forecast_url, timeout=(1.0, timeout))


def test_a_reading_from_the_documented_format(open_meteo: FakeOpenMeteo) -> None:
    reading = client(open_meteo).fetch("Hanoi")
    assert reading.city == "Hanoi"
    assert reading.provider == "open-meteo"
    _, description = WEATHER_CODES[sum(map(ord, "Hanoi")) % len(WEATHER_CODES)]
    assert reading.description == description
    assert 0 <= reading.humidity <= 100
    assert reading.observed_at.tzinfo is timezone.utc
    # "current" is the 15-minute interval that started last.
    assert reading.observed_at.timestamp() % 900 == 0
    assert 0 <= (datetime.now(timezone.utc) - reading.observed_at).total_seconds() < 900 + 5
    forecast = [r for r in open_meteo.log() if r.endpoint == "forecast"][-1]
    assert forecast.params["current"] == "temperature_2m,relative_humidity_2m,weather_code"
    assert (float(forecast.params["latitude"]), float(forecast.params["longitude"])) == open_meteo.place("Hanoi")
    assert forecast.observed == int(reading.observed_at.timestamp())


def test_geocoding_is_asked_once_per_city(open_meteo: FakeOpenMeteo) -> None:
    weather = client(open_meteo)
    for _ in range(3):
        weather.fetch("Hanoi")
        weather.fetch("Tokyo")
    assert open_meteo.answered("Hanoi", "geocoding") == 1
    assert open_meteo.answered("Tokyo", "geocoding") == 1
    assert open_meteo.answered("Hanoi", "forecast") == 3
    geocoding = next(r for r in open_meteo.log() if r.endpoint == "geocoding")
    assert (geocoding.params["name"], geocoding.params["count"]) == ("Hanoi", "1")


def test_an_unknown_city_is_not_found_and_asked_again_next_time(open_meteo: FakeOpenMeteo) -> None:
    open_meteo.script("Atlantis", "not-found", endpoint="geocoding")
    weather = client(open_meteo)
    with pytest.raises(CityNotFoundError, match=r"^Open-Meteo does not know the city 'Atlantis'$"):
        weather.fetch("Atlantis")
    assert weather.fetch("Atlantis").city == "Atlantis"  # found now (the script ran out): not cached
    assert open_meteo.answered("Atlantis", "geocoding") == 2


@pytest.mark.parametrize(("endpoint", "behaviour", "error", "message"), [
    ("forecast", "429", WeatherBackoffError, "Open-Meteo answered 429 for 'Hanoi'"),
    ("forecast", "500", WeatherBackoffError, "Open-Meteo answered 500 for 'Hanoi'"),
    ("forecast", "503", WeatherBackoffError, "Open-Meteo answered 503 for 'Hanoi'"),
    ("forecast", "400", WeatherResponseError,
     "Open-Meteo refused the forecast request for 'Hanoi' (400: Latitude must be in range of -90 to 90°. Given: 91.0.)"),
    ("forecast", "403", WeatherResponseError, "Open-Meteo answered 403 for 'Hanoi'"),
    ("forecast", "malformed", WeatherResponseError, "the forecast answer for 'Hanoi' is not JSON"),
    ("forecast", "incomplete", WeatherResponseError,
     "the forecast answer for 'Hanoi' is unusable: 'current.temperature_2m' is missing or not a number"),
    ("forecast", "absurd", WeatherResponseError, "the forecast answer for 'Hanoi' is unusable: humidity 400 % is impossible"),
    ("forecast", "fahrenheit", WeatherResponseError, "the forecast answer for 'Hanoi' is unusable: temperature in '°F', not °C"),
    ("forecast", "timeout", WeatherUnavailableError, "no answer for 'Hanoi' within 0.5 s"),
    ("geocoding", "429", WeatherBackoffError, "Open-Meteo answered 429 for 'Hanoi'"),
    ("geocoding", "malformed", WeatherResponseError, "the geocoding answer for 'Hanoi' is not JSON"),
    ("geocoding", "incomplete", WeatherResponseError,
     "the geocoding answer for 'Hanoi' is unusable: 'results[0].latitude' is missing or not a latitude"),
    ("geocoding", "absurd", WeatherResponseError,
     "the geocoding answer for 'Hanoi' is unusable: 'results[0].latitude' is missing or not a latitude"),
    ("geocoding", "timeout", WeatherUnavailableError, "no answer for 'Hanoi' within 0.5 s"),
])
def test_each_api_error_is_a_precise_exception(open_meteo: FakeOpenMeteo, endpoint: str, behaviour: str,
                                              error: type[WeatherError], message: str) -> None:
    open_meteo.timeout_seconds = 1.5
    open_meteo.script("Hanoi", behaviour, endpoint=endpoint)
    weather = client(open_meteo, timeout=0.5)
    with pytest.raises(error) as caught:
        weather.fetch("Hanoi")
    assert str(caught.value) == message
    assert weather.fetch("Hanoi").city == "Hanoi"  # the next call, the script run out, works


def test_unreachable_api() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    dead = OpenMeteoClient(f"{url}/v1/search", f"{url}/v1/forecast", timeout=(0.5, 0.5))
    with pytest.raises(WeatherUnavailableError, match=r"^request for 'Hanoi' failed \(ConnectionError\)$"):
        dead.fetch("Hanoi")


def test_the_default_time_format_is_read_too() -> None:
    # Without timeformat=unixtime, Open-Meteo answers local ISO times and says the offset.
    body = {"utc_offset_seconds": 25200, "timezone": "Asia/Bangkok",
            "current_units": {"time": "iso8601", "temperature_2m": "°C"},
            "current": {"time": "2026-11-26T18:30", "interval": 900, "temperature_2m": 24.5,
                        "relative_humidity_2m": 81, "weather_code": 2}}
    reading = parse_current("Hanoi", body, now=datetime(2026, 11, 26, 12, tzinfo=timezone.utc))
    assert reading.observed_at == datetime(2026, 11, 26, 11, 30, tzinfo=timezone.utc)
    assert (reading.temperature, reading.humidity, reading.description) == (24.5, 81, "partly cloudy")


@pytest.mark.parametrize(("code", "description"), [(0, "clear sky"), (3, "overcast"), (45, "fog"),
                                                   (65, "heavy rain"), (99, "thunderstorm with heavy hail"),
                                                   (42, "weather code 42"), (3.0, "overcast")])
def test_wmo_codes_become_short_descriptions(code: float, description: str) -> None:
    body = {"current": {"time": 1764151200, "temperature_2m": 1.0, "relative_humidity_2m": 50, "weather_code": code}}
    assert parse_current("Oslo", body).description == description


@pytest.mark.parametrize("body", [
    {"current": {"time": 1764151200, "temperature_2m": 1.0, "relative_humidity_2m": 50, "weather_code": 2.5}},
    {"current": {"time": 1764151200, "temperature_2m": 1.0, "relative_humidity_2m": 50, "weather_code": None}},
    {"current": {"time": 1764151200, "temperature_2m": 1.0, "relative_humidity_2m": 50, "weather_code": True}},
    {"current": {"time": 1764151200, "temperature_2m": 71.0, "relative_humidity_2m": 50, "weather_code": 0}},
    {"current": {"time": 4102444800 * 2, "temperature_2m": 1.0, "relative_humidity_2m": 50, "weather_code": 0}},
    {"current": {"time": "yesterday", "temperature_2m": 1.0, "relative_humidity_2m": 50, "weather_code": 0}},
    {"current": {"temperature_2m": 1.0, "relative_humidity_2m": 50, "weather_code": 0}},
    {"error": True, "reason": "Cannot initialize ForecastVariable from invalid String value"},
])
def test_unusable_answers_are_refused(body: dict) -> None:
    with pytest.raises(WeatherResponseError, match="the forecast answer for 'Oslo' is unusable"):
        parse_current("Oslo", body)


def test_every_documented_code_has_a_description() -> None:
    documented = {0, 1, 2, 3, 45, 48, 51, 53, 55, 56, 57, 61, 63, 65, 66, 67, 71, 73, 75, 77, 80, 81, 82, 85, 86,
                  95, 96, 99}
    assert set(WMO_DESCRIPTIONS) == documented
    assert all(d and d == d.lower() and len(d) <= 40 for d in WMO_DESCRIPTIONS.values())


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["current", "current_units", "time", "temperature_2m", "relative_humidity_2m",
                         "weather_code", "utc_offset_seconds", "results", "latitude", "longitude"]),
        inner, max_size=5),
    max_leaves=14)


# Answers shaped like the documented one, with values around the edges of what is believable: many
# must be read, the rest refused (_JSON above covers the shapeless ones).
_SHAPED = st.fixed_dictionaries(
    {"current": st.fixed_dictionaries({
        "time": st.integers(900_000_000, 2_100_000_000)
        | st.datetimes(datetime(1990, 1, 1), datetime(2040, 1, 1)).map(lambda moment: moment.strftime("%Y-%m-%dT%H:%M")),
        "temperature_2m": st.floats(-150, 150) | st.integers(-150, 150),
        "relative_humidity_2m": st.integers(-10, 110) | st.floats(-10, 110),
        "weather_code": st.integers(-5, 120) | st.sampled_from([0.0, 2.5]),
    })},
    optional={"utc_offset_seconds": st.integers(-90_000, 90_000) | st.none(),
              "current_units": st.fixed_dictionaries({"temperature_2m": st.sampled_from(["°C", "°F"])})})


@given(_JSON | _SHAPED)
def test_any_decoded_forecast_gives_a_reading_or_a_response_error(body: object) -> None:
    try:
        reading = parse_current("Hanoi", body)
    except WeatherResponseError:
        return
    assert 0 <= reading.humidity <= 100
    assert -100 <= reading.temperature <= 70
    assert reading.observed_at.tzinfo is timezone.utc
    assert reading.description and reading.provider == "open-meteo"


@given(_JSON)
def test_any_decoded_geocoding_answer_gives_a_place_or_an_error(body: object) -> None:
    try:
        latitude, longitude = parse_place("Hanoi", body)
    except (WeatherResponseError, CityNotFoundError):
        return
    assert -90 <= latitude <= 90 and -180 <= longitude <= 180
