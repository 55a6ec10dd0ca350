"""No secret reaches any output line: account key, API key, MySQL password, connection string, SAS.

The instances run with recognisable secrets, at DEBUG, through failures whose exception texts are
the usual leak (requests puts the URL with ``appid=`` into its errors; SDKs quote their inputs).
"""

from __future__ import annotations

import base64
import signal
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from azure.storage.blob import AccessPolicy, BlobServiceClient, generate_container_sas

from DistributedMutex.backends.azure.lease import DEFAULT_API_VERSION
from harness.services import AZURITE_BLOB, Azurite, free_port

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


def container_sas_url(port: int, container: str, **options) -> str:
    options.setdefault("expiry", datetime.now(timezone.utc) + timedelta(hours=1))
    sas = generate_container_sas(ACCOUNT, container, account_key=ACCOUNT_KEY, **options)
    return f"http://127.0.0.1:{port}/{ACCOUNT}/{container}?{sas}"


def sas_forms(url: str) -> list[str]:
    """The SAS in every form it could be printed in: the query, and the signature raw and encoded."""
    query = urlsplit(url).query
    signature = parse_qs(query)["sig"][0]
    return [url, query, signature, quote(signature, safe=""), quote(signature)]


def test_no_secret_in_any_output_line(spawn, demo_env, secret_azurite, secret_user, weather, container_name) -> None:
    assert AZURITE_BLOB.exists()
    weather.api_key = API_KEY
    conn = (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{secret_azurite.port}/{ACCOUNT};")
    env = dict(demo_env, AZURE_STORAGE_CONNECTION_STRING=conn, OPENWEATHER_API_KEY=API_KEY,
               MYSQL_USER=secret_user, MYSQL_PASSWORD=PASSWORD, LOG_LEVEL="DEBUG")
    without_key = {k: v for k, v in env.items() if k != "AZURE_STORAGE_CONNECTION_STRING"}
    sas_read_write = container_sas_url(secret_azurite.port, container_name, permission="rw")
    sas_read_only = container_sas_url(secret_azurite.port, container_name, permission="r")
    sas_policy = container_sas_url(secret_azurite.port, container_name, policy_id="read-only", expiry=None)
    sas_expired = container_sas_url(secret_azurite.port, container_name, permission="rw",
                                    expiry=datetime.now(timezone.utc) - timedelta(minutes=5))
    try:
        good = spawn("good", env)
        good.wait_for(r"stored \d+ readings", timeout=20)
        # The next leader cannot reach the weather API: requests' errors carry the URL and key.
        no_api = spawn("no-api", dict(env, OPENWEATHER_URL=f"http://127.0.0.1:{free_port()}/data/2.5/weather"))
        no_api.wait_for(r"leader is good", timeout=10)
        good.signal(signal.SIGTERM)
        good.wait(3)
        no_api.wait_for(r"OpenWeatherMap unavailable: request for 'Hanoi' failed", timeout=10)
        # A wrong MySQL password stops an instance at start.
        bad_db = spawn("bad-db", dict(env, MYSQL_PASSWORD=WRONG_PASSWORD))
        assert bad_db.wait(15) == 2
        assert bad_db.find(r"refused the login")
        # Container SAS URLs: one that works, and three refused (at start, by the server, expired).
        sas = spawn("sas", dict(without_key, AZURE_STORAGE_CONTAINER_SAS_URL=sas_read_write))
        sas.wait_for(r"leader is no-api", timeout=10)
        sas_denied = spawn("sas-denied", dict(without_key, AZURE_STORAGE_CONTAINER_SAS_URL=sas_read_only))
        assert sas_denied.wait(15) == 2
        BlobServiceClient.from_connection_string(conn, api_version=DEFAULT_API_VERSION).get_container_client(
            container_name).set_container_access_policy(
            {"read-only": AccessPolicy(permission="r", expiry=datetime.now(timezone.utc) + timedelta(hours=1))})
        sas_refused = spawn("sas-refused", dict(without_key, AZURE_STORAGE_CONTAINER_SAS_URL=sas_policy))
        assert sas_refused.wait(15) == 2
        assert sas_refused.find(r"lacks the write \(w\) permission")
        sas_old = spawn("sas-expired", dict(without_key, AZURE_STORAGE_CONTAINER_SAS_URL=sas_expired))
        assert sas_old.wait(15) == 2
        # Workers whose storage vanishes.
        secret_azurite.stop()
        sas.wait_for(r"cannot reach the lease storage", timeout=15)
    finally:
        weather.api_key = "test-api-key-1234"
    sas_secrets = [form for url in (sas_read_write, sas_read_only, sas_policy, sas_expired) for form in sas_forms(url)]
    for instance in (good, no_api, bad_db, sas, sas_denied, sas_refused, sas_old):
        instance.stop()
        text = instance.output
        for secret in (ACCOUNT_KEY, API_KEY, PASSWORD, WRONG_PASSWORD, conn, quote(ACCOUNT_KEY, safe=""),
                       quote(API_KEY), "SECRET-ACCOUNT-KEY", *sas_secrets):
            assert secret not in text, f"{instance.name} printed a secret:\n{instance.tail(60)}"
        assert "Traceback" not in text, instance.tail(60)
