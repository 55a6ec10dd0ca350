"""No secret reaches any output line: account key, API key, MySQL password, connection string.

The instances run with recognisable secrets, at DEBUG, through failures whose exception texts are
the usual leak (requests puts the URL with ``appid=`` into its errors; SDKs quote their inputs).
"""

from __future__ import annotations

import base64
import signal
from urllib.parse import quote

import pytest

from support.services import AZURITE_BLOB, Azurite, free_port

ACCOUNT = "dmsecretacct"
ACCOUNT_KEY = base64.b64encode(b"SECRET-ACCOUNT-KEY-4242-recognisable").decode()
API_KEY = "APIKEY-SECRET-31337-recognisable"
PASSWORD = "Pw-SECRET-5150"
WRONG_PASSWORD = "Pw-WRONG-SECRET-77"


@pytest.fixture
def secret_azurite(monkeypatch):
    monkeypatch.setenv("AZURITE_ACCOUNTS", f"{ACCOUNT}:{ACCOUNT_KEY}")
    server = Azurite().start()
    yield server
    server.stop()


@pytest.fixture
def secret_user(mysql_server, database):
    user = "dm_secret_user"
    with mysql_server.connect() as connection, connection.cursor() as cursor:
        for host in ("127.0.0.1", "localhost"):
            cursor.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
            cursor.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY %s", (PASSWORD,))
            cursor.execute(f"GRANT ALL ON `{database}`.* TO '{user}'@'{host}'")
    yield user
    with mysql_server.connect() as connection, connection.cursor() as cursor:
        for host in ("127.0.0.1", "localhost"):
            cursor.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")


def test_no_secret_in_any_output_line(spawn, demo_env, secret_azurite, secret_user, weather) -> None:
    assert AZURITE_BLOB.exists()
    weather.api_key = API_KEY
    conn = (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{secret_azurite.port}/{ACCOUNT};")
    env = dict(demo_env, AZURE_STORAGE_CONNECTION_STRING=conn, OPENWEATHER_API_KEY=API_KEY,
               MYSQL_USER=secret_user, MYSQL_PASSWORD=PASSWORD, LOG_LEVEL="DEBUG")
    try:
        good = spawn("good", env)
        good.wait_for(r"stored \d+ readings", timeout=20)
        # The next leader cannot reach the weather API: requests' errors carry the URL and key.
        no_api = spawn("no-api", dict(env, OPENWEATHER_URL=f"http://127.0.0.1:{free_port()}/data/2.5/weather"))
        no_api.wait_for(r"leader is good", timeout=10)
        good.signal(signal.SIGTERM)
        good.wait(3)
        no_api.wait_for(r"OpenWeatherMap unavailable: request for 'Hanoi' failed", timeout=10)
        # One more, a worker with a wrong MySQL password.
        bad_db = spawn("bad-db", dict(env, MYSQL_PASSWORD=WRONG_PASSWORD))
        bad_db.wait_for(r"refused the login", timeout=10)
        # A worker whose storage vanishes.
        secret_azurite.stop()
        bad_db.wait_for(r"cannot reach the lease storage", timeout=15)
    finally:
        weather.api_key = "test-api-key-1234"
    for instance in (good, no_api, bad_db):
        instance.stop()
        text = instance.output
        for secret in (ACCOUNT_KEY, API_KEY, PASSWORD, WRONG_PASSWORD, conn, quote(ACCOUNT_KEY, safe=""),
                       quote(API_KEY), "SECRET-ACCOUNT-KEY"):
            assert secret not in text, f"{instance.name} printed a secret:\n{instance.tail(60)}"
        assert "Traceback" not in text, instance.tail(60)
