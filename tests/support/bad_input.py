"""The configuration mistakes of docs/bad-input.md, by row id: the settings that make each one.

tests/test_bad_input.py checks that each gives exactly the documented line, and that the document
and this table name the same rows. Secrets here are recognisable so that a leak is found."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import urlencode

SECRET_ACCOUNT_KEY = "c2VjcmV0LWFjY291bnQta2V5LTEyMzQ="  # base64 of "secret-account-key-1234"
SECRET_SIG = "U0FTLVNFQ1JFVC1zaWduYXR1cmUtOTk5/+=="  # a SAS signature: base64, so it gets %-encoded
FUTURE, PAST = "2099-01-01T00:00:00Z", "2020-01-01T00:00:00Z"


def sas_url(base: str = "https://acct.blob.core.windows.net/leader-election", **query: str) -> str:
    """A container SAS URL whose query says what a real one would (the signature is made up)."""
    fields = {"sv": "2026-06-06", "sr": "c", "sp": "rw", "se": FUTURE, "sig": SECRET_SIG}
    fields.update(query)
    return f"{base}?{urlencode({k: v for k, v in fields.items() if v is not None})}"


@dataclass(frozen=True)
class Case:
    env: dict[str, str]
    files: dict[str, str] = field(default_factory=dict)  # constant.py / .env in the run directory


CS = "AZURE_STORAGE_CONNECTION_STRING"
SAS = "AZURE_STORAGE_CONTAINER_SAS_URL"
ACCOUNT_URL = "AZURE_STORAGE_ACCOUNT_URL"
KEYED = f"AccountName=acct;AccountKey={SECRET_ACCOUNT_KEY}"

CONFIG_CASES: dict[str, Case] = {
    # storage: connection string
    "cs-empty": Case({CS: ""}),
    "cs-not-key-value": Case({CS: "not a connection string"}),
    "cs-unknown-key": Case({CS: f"{KEYED};Colour=blue"}),
    "cs-key-not-base64": Case({CS: "AccountName=acct;AccountKey=not*base64!"}),
    "cs-no-credential": Case({CS: "AccountName=acct"}),
    "cs-key-without-account": Case({CS: f"AccountKey={SECRET_ACCOUNT_KEY}"}),
    "cs-endpoint-not-url": Case({CS: f"{KEYED};BlobEndpoint=ftp://host/acct"}),
    "cs-bad-protocol": Case({CS: f"DefaultEndpointsProtocol=gopher;{KEYED}"}),
    "cs-sas-without-endpoint": Case({CS: "SharedAccessSignature=sv=2024&sig=abc"}),
    "cs-plain-http-remote": Case({CS: f"{KEYED};BlobEndpoint=http://azurite:10000/acct"}),
    "allow-http-not-boolean": Case({"AZURE_STORAGE_ALLOW_HTTP": "maybe"}),
    "api-version-not-a-date": Case({"AZURE_STORAGE_API_VERSION": "latest"}),
    # storage: container SAS URL
    "sas-empty": Case({SAS: " "}),
    "sas-not-a-url": Case({SAS: "leader-election?sig=x"}),
    "sas-no-container": Case({SAS: sas_url("https://acct.blob.core.windows.net")}),
    "sas-bad-container": Case({SAS: sas_url("https://acct.blob.core.windows.net/Leader_Election")}),
    "sas-no-signature": Case({SAS: sas_url(sig=None)}),
    "sas-blob-sas": Case({SAS: sas_url(sr="b")}),
    "sas-account-sas": Case({SAS: sas_url(sr=None, srt="sco", ss="b")}),
    "sas-missing-write": Case({SAS: sas_url(sp="r")}),
    "sas-missing-read-write": Case({SAS: sas_url(sp="cl")}),
    "sas-no-permissions": Case({SAS: sas_url(sp=None)}),
    "sas-bad-expiry": Case({SAS: sas_url(se="tomorrow")}),
    "sas-expired": Case({SAS: sas_url(se=PAST)}),
    "sas-plain-http-remote": Case({SAS: sas_url("http://azurite:10000/devstoreaccount1/leader-election")}),
    "sas-container-name-differs": Case({SAS: sas_url(), "CONTAINER_NAME": "other-container"}),
    "sas-and-connection-string": Case({CS: "UseDevelopmentStorage=true", SAS: sas_url()}),
    # storage: account URL (Azure AD)
    "account-url-http": Case({ACCOUNT_URL: "http://acct.blob.core.windows.net"}),
    "account-url-with-query": Case({ACCOUNT_URL: "https://acct.blob.core.windows.net/?" + sas_url().split("?")[1]}),
    "account-url-with-container": Case({ACCOUNT_URL: "https://acct.blob.core.windows.net/leader-election"}),
    "account-url-and-sas": Case({SAS: sas_url(), ACCOUNT_URL: "https://acct.blob.core.windows.net"}),
    # the lease
    "container-name-invalid": Case({"CONTAINER_NAME": "Leader_Election"}),
    "container-name-double-hyphen": Case({"CONTAINER_NAME": "a--b"}),
    "blob-name-empty": Case({"BLOB_NAME": ""}),
    "lease-duration-too-short": Case({"LEASE_DURATION": "14"}),
    "lease-duration-too-long": Case({"LEASE_DURATION": "61"}),
    "lease-duration-infinite": Case({"LEASE_DURATION": "-1"}),
    "lease-duration-fraction": Case({"LEASE_DURATION": "15.5"}),
    "lease-duration-not-a-number": Case({"LEASE_DURATION": "fifteen"}),
    "lease-duration-empty": Case({"LEASE_DURATION": ""}),
    "renew-too-close-to-lease": Case({"RENEW_INTERVAL": "10"}),
    "renew-zero": Case({"RENEW_INTERVAL": "0"}),
    "renew-with-unit": Case({"RENEW_INTERVAL": "5s"}),
    "renew-nan": Case({"RENEW_INTERVAL": "nan"}),
    "acquire-not-a-number": Case({"ACQUIRE_INTERVAL": "abc"}),
    "acquire-longer-than-lease": Case({"ACQUIRE_INTERVAL": "20"}),
    "instance-id-invalid": Case({"INSTANCE_ID": "has space"}),
    # the weather API
    "api-key-missing": Case({"OPENWEATHER_API_KEY": None}),  # type: ignore[dict-item]
    "api-key-empty": Case({"OPENWEATHER_API_KEY": "  "}),
    "api-key-with-space": Case({"OPENWEATHER_API_KEY": "two words"}),
    "weather-url-not-http": Case({"OPENWEATHER_URL": "ftp://example.com"}),
    "cities-empty": Case({"WEATHER_CITIES": ""}),
    "cities-empty-name": Case({"WEATHER_CITIES": "Hanoi,,Tokyo"}),
    "cities-duplicate": Case({"WEATHER_CITIES": "Hanoi,hanoi"}),
    "cities-name-too-long": Case({"WEATHER_CITIES": "Hanoi," + "x" * 101}),
    "fetch-interval-too-short": Case({"FETCH_INTERVAL": "0.5"}),
    "fetch-interval-not-a-number": Case({"FETCH_INTERVAL": "often"}),
    "read-interval-negative": Case({"READ_INTERVAL": "-3"}),
    "buffer-size-zero": Case({"READING_BUFFER_SIZE": "0"}),
    "buffer-size-not-a-number": Case({"READING_BUFFER_SIZE": "many"}),
    "stall-timeout-too-short": Case({"LEADER_STALL_TIMEOUT": "30", "FETCH_INTERVAL": "60"}),
    # MySQL
    "mysql-host-blank": Case({"MYSQL_HOST": " "}),
    "mysql-port-out-of-range": Case({"MYSQL_PORT": "70000"}),
    "mysql-port-not-a-number": Case({"MYSQL_PORT": "mysql"}),
    "mysql-user-empty": Case({"MYSQL_USER": ""}),
    "mysql-database-hostile": Case({"MYSQL_DATABASE": "weather`; DROP DATABASE mysql; --"}),
    "mysql-database-system": Case({"MYSQL_DATABASE": "mysql"}),
    # the rest
    "log-level-unknown": Case({"LOG_LEVEL": "LOUD"}),
    "constant-py-syntax-error": Case({}, files={"constant.py": "LEASE_DURATION = = 15\n"}),
    "constant-py-raises": Case({}, files={"constant.py": "import no_such_module_here\n"}),
}
