"""docs/bad-input.md for the tests: its rows read as cases, the configuration mistakes by row id
(the settings that make each one), and the checks that an instance printed a row's line.

tests/test_bad_input.py checks that each row gives exactly the documented line, and that the
document and the tests name the same rows. Secrets here are recognisable so that a leak is found."""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from harness.processes import ROOT, Instance

SECRET_ACCOUNT_KEY = "c2VjcmV0LWFjY291bnQta2V5LTEyMzQ="  # base64 of "secret-account-key-1234"
SECRET_SIG = "U0FTLVNFQ1JFVC1zaWduYXR1cmUtOTk5/+=="  # a SAS signature: base64, so it gets %-encoded
FUTURE, PAST = "2099-01-01T00:00:00Z", "2020-01-01T00:00:00Z"
REDIS_SECRET = "Redis-Secret-77"  # the password in every REDIS_URL here
SECRETS = (SECRET_ACCOUNT_KEY, SECRET_SIG, quote(SECRET_SIG, safe=""), "Pw-least-4242", "Pw-WRONG-99", REDIS_SECRET)
DOC = ROOT / "docs" / "bad-input.md"
# Rows whose test needs fixtures of its own module.
ROWS_TESTED_ELSEWHERE = {
    "account-url-token-refused": "tests/test_azure_ad.py",
    "account-url-storage-refuses-token": "tests/test_azure_ad.py",
    "zk-session-timeout-not-granted": "tests/test_zookeeper_backend.py",
    # Redis: a server of the test's own (a password, nothing listening).
    "redis-password-refused": "tests/test_redis_demo.py",
    "redis-unreachable": "tests/test_redis_demo.py",
    # Raft's mutual TLS: certificates made for each test.
    **{row: "tests/test_demo_raft_tls.py" for row in (
        "raft-tls-only-some", "raft-tls-empty", "raft-tls-file-missing", "raft-tls-not-a-certificate",
        "raft-tls-key-encrypted", "raft-tls-key-not-the-certificates", "raft-tls-cert-names-another-id",
        "raft-tls-cert-expired", "raft-tls-cert-not-yet-valid", "raft-tls-cert-other-ca",
        "raft-peers-beyond-loopback-without-tls", "raft-status-tls-without-raft-id")},
    # distributed-mutex run's own refusals, run as the wrapper's process.
    **{row: "tests/test_run_cli.py" for row in (
        "run-no-action", "run-unknown-action", "run-no-command", "run-unknown-flag", "run-on-exit-unknown",
        "run-grace-not-a-number", "run-grace-out-of-range", "run-kill-margin-negative", "run-setting-flag-bad",
        "run-setting-env-bad", "run-backend-flag-unknown", "run-instance-id-flag-invalid",
        "run-log-level-flag-unknown", "run-command-not-found", "run-command-no-such-file",
        "run-command-not-executable", "run-command-is-a-directory")},
}


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

RAFT_PEERS = "a=127.0.0.1:7001,b=127.0.0.1:7002,c=127.0.0.1:7003"
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
    # the other election backends
    "backend-unknown": Case({"ELECTION_BACKEND": "etcd"}),
    "zk-hosts-chroot": Case({"ELECTION_BACKEND": "zookeeper", "ZOOKEEPER_HOSTS": "zk1:2181,zk2:2181/apps"}),
    "zk-hosts-bad-port": Case({"ELECTION_BACKEND": "zookeeper", "ZOOKEEPER_HOSTS": "zk1:21810000"}),
    "zk-path-relative": Case({"ELECTION_BACKEND": "zookeeper", "ZOOKEEPER_PATH": "election"}),
    "zk-path-reserved": Case({"ELECTION_BACKEND": "zookeeper", "ZOOKEEPER_PATH": "/zookeeper/election"}),
    "zk-session-timeout-too-short": Case({"ELECTION_BACKEND": "zookeeper", "ZOOKEEPER_SESSION_TIMEOUT": "1.5"}),
    "zk-session-timeout-too-long": Case({"ELECTION_BACKEND": "zookeeper", "ZOOKEEPER_SESSION_TIMEOUT": "100"}),
    "pg-url-not-postgres": Case({"ELECTION_BACKEND": "postgres", "POSTGRES_URL": "mysql://root@127.0.0.1/weather"}),
    "pg-url-not-a-url": Case({"ELECTION_BACKEND": "postgres", "POSTGRES_URL": "host=db dbname=weather"}),
    "pg-url-bad-port": Case({"ELECTION_BACKEND": "postgres",
                             "POSTGRES_URL": "postgresql://app:Pw-least-4242@db:99999/weather"}),
    "pg-notify-url-not-a-url": Case({"ELECTION_BACKEND": "postgres", "POSTGRES_NOTIFY_URL": "db:5432"}),
    "pg-table-invalid": Case({"ELECTION_BACKEND": "postgres", "POSTGRES_TABLE": "Leases; DROP TABLE x"}),
    "pg-election-empty": Case({"ELECTION_BACKEND": "postgres", "POSTGRES_ELECTION": " "}),
    "pg-lease-too-short": Case({"ELECTION_BACKEND": "postgres", "POSTGRES_LEASE_DURATION": "1"}),
    "pg-lease-not-a-number": Case({"ELECTION_BACKEND": "postgres", "POSTGRES_LEASE_DURATION": "5s"}),
    "pg-call-timeout-too-long": Case({"ELECTION_BACKEND": "postgres", "POSTGRES_CALL_TIMEOUT": "2"}),
    "pg-pooled-not-boolean": Case({"ELECTION_BACKEND": "postgres", "POSTGRES_POOLED": "pgbouncer"}),
    "raft-peers-missing": Case({"ELECTION_BACKEND": "raft"}),
    "raft-peers-not-id-host-port": Case({"ELECTION_BACKEND": "raft", "RAFT_PEERS": "127.0.0.1:7001,127.0.0.1:7002"}),
    "raft-peers-duplicate-id": Case({"ELECTION_BACKEND": "raft", "RAFT_PEERS": "a=127.0.0.1:7001,a=127.0.0.1:7002"}),
    "raft-peers-no-port": Case({"ELECTION_BACKEND": "raft", "RAFT_PEERS": "a=127.0.0.1,b=127.0.0.1:7002"}),
    "raft-peers-same-address": Case({"ELECTION_BACKEND": "raft", "RAFT_PEERS": "a=127.0.0.1:7001,b=127.0.0.1:7001"}),
    "raft-id-not-a-peer": Case({"ELECTION_BACKEND": "raft", "RAFT_PEERS": RAFT_PEERS, "RAFT_ID": "d"}),
    "raft-election-timeout-not-a-range": Case({"ELECTION_BACKEND": "raft", "RAFT_PEERS": RAFT_PEERS, "RAFT_ID": "a",
                                               "RAFT_ELECTION_TIMEOUT": "1500"}),
    "raft-election-timeout-reversed": Case({"ELECTION_BACKEND": "raft", "RAFT_PEERS": RAFT_PEERS, "RAFT_ID": "a", "RAFT_ELECTION_TIMEOUT": "2000-1000"}),
    "raft-data-dir-is-a-file": Case({"ELECTION_BACKEND": "raft", "RAFT_PEERS": RAFT_PEERS, "RAFT_ID": "a", "RAFT_DATA_DIR": "/etc/hostname"}),
    # Redis
    "redis-url-not-redis": Case({"ELECTION_BACKEND": "redis", "REDIS_URL": f"http://:{REDIS_SECRET}@cache:6379"}),
    "redis-url-bad-port": Case({"ELECTION_BACKEND": "redis", "REDIS_URL": f"redis://:{REDIS_SECRET}@cache:65536/0"}),
    "redis-url-db-not-a-number": Case({"ELECTION_BACKEND": "redis",
                                       "REDIS_URL": f"redis://:{REDIS_SECRET}@cache:6379/zero"}),
    "redis-url-sets-timeouts": Case({"ELECTION_BACKEND": "redis",
                                     "REDIS_URL": f"redis://:{REDIS_SECRET}@cache:6379/0?socket_timeout=30"}),
    "redis-key-prefix-invalid": Case({"ELECTION_BACKEND": "redis", "REDIS_KEY_PREFIX": "weather leader"}),
    "redis-lease-too-short": Case({"ELECTION_BACKEND": "redis", "REDIS_LEASE_DURATION": "1"}),
    "redis-lease-not-a-number": Case({"ELECTION_BACKEND": "redis", "REDIS_LEASE_DURATION": "5s"}),
    # the weather API
    "api-key-missing": Case({"OPENWEATHER_API_KEY": None, "WEATHER_PROVIDER": "openweathermap"}),  # type: ignore[dict-item]
    "weather-provider-unknown": Case({"WEATHER_PROVIDER": "accuweather"}),
    "weather-simulation-unknown": Case({"WEATHER_SIMULATION": "sometimes"}),
    "api-key-empty": Case({"OPENWEATHER_API_KEY": "  "}),
    "api-key-with-space": Case({"OPENWEATHER_API_KEY": "two words"}),
    "weather-url-not-http": Case({"OPENWEATHER_URL": "ftp://example.com"}),
    "open-meteo-geocoding-url-not-http": Case({"OPEN_METEO_GEOCODING_URL": "geocoding-api.open-meteo.com/v1/search"}),
    "open-meteo-forecast-url-not-http": Case({"OPEN_METEO_FORECAST_URL": "ftp://example.com"}),
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
    # the metrics endpoint
    "metrics-port-zero": Case({"METRICS_PORT": "0"}),
    "metrics-port-too-high": Case({"METRICS_PORT": "65536"}),
    "metrics-port-not-a-number": Case({"METRICS_PORT": "metrics"}),
    "metrics-host-not-an-address": Case({"METRICS_PORT": "9100", "METRICS_HOST": "http://0.0.0.0:9100"}),
    "metrics-host-without-port": Case({"METRICS_HOST": "0.0.0.0"}),
    # the store: MySQL or SQLite
    "mysql-setting-without-host": Case({"MYSQL_PASSWORD": "Pw-least-4242"}),
    "sqlite-path-and-mysql-host": Case({"MYSQL_HOST": "127.0.0.1", "SQLITE_PATH": "weather.sqlite3"}),
    "sqlite-path-empty": Case({"SQLITE_PATH": " "}),
    "pg-store-and-mysql-host": Case({"POSTGRES_STORE": "true", "MYSQL_HOST": "127.0.0.1"}),
    "pg-store-not-boolean": Case({"POSTGRES_STORE": "postgres"}),
    # the rest
    "log-level-unknown": Case({"LOG_LEVEL": "LOUD"}),
    "journal-no-directory": Case({"LEADERSHIP_JOURNAL": "/no/such/directory/leadership.jsonl"}),
    "journal-is-directory": Case({"LEADERSHIP_JOURNAL": "/tmp"}),
    "constant-py-syntax-error": Case({}, files={"constant.py": "LEASE_DURATION = = 15\n"}),
    "constant-py-raises": Case({}, files={"constant.py": "import no_such_module_here\n"}),
}


# -- the document --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    id: str
    exit: str  # "2" or "keeps running" (126, 127: the command distributed-mutex run cannot start)
    message: str  # {name} stands for a value; a final … for the rest of the line

    def pattern(self, **values: str) -> re.Pattern[str]:
        """The message as a regex; named values given here must appear exactly."""
        pieces = re.split(r"(\{\w+\}|…)", self.message)
        regex = ""
        for piece in pieces:
            if piece == "…":
                regex += ".*"
            elif re.fullmatch(r"\{\w+\}", piece):
                name = piece[1:-1]
                regex += re.escape(values[name]) if name in values else ".+?"
            else:
                regex += re.escape(piece)
        return re.compile(regex)


def read_rows() -> tuple[dict[str, Row], list[str]]:
    """The rows by id, and the lines that look like rows but cannot be read (or repeat an id)."""
    rows: dict[str, Row] = {}
    unreadable: list[str] = []
    for line in DOC.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"\| ([a-z0-9-]+) \| .+? \| (2|126|127|keeps running) \| (`+) ?(.+?) ?\3 \|", line)
        if match and match.group(1) not in rows:
            rows[match.group(1)] = Row(match.group(1), match.group(2), match.group(4))
        elif re.match(r"\| [a-z0-9-]+ \|", line) and not line.startswith("| id |"):
            unreadable.append(line)
    return rows, unreadable


ROWS, UNREADABLE = read_rows()

def message_of(text: str) -> str:
    """A log line without its time, level and instance: what the table shows."""
    return re.sub(r"^\d{4}-\d\d-\d\d [\d:,]+ [A-Z]+ \[[^\]]*\] ", "", text)


def assert_stops_with(instance: Instance, row_id: str, timeout: float = 15, **values: str) -> None:
    row = ROWS[row_id]
    assert row.exit == "2"
    code = instance.wait(timeout)
    errors = [line.text for line in instance.lines if line.stream == "err"]
    assert code == 2, instance.tail()
    pattern = row.pattern(**values)
    if row.message.startswith("configuration error:"):
        assert len(errors) == 1, instance.tail()  # found at start: nothing else is printed
        assert pattern.fullmatch(errors[0]), f"{errors[0]!r} is not {row.message!r}"
    else:
        assert any(pattern.fullmatch(message_of(e)) for e in errors), f"no line {row.message!r}:\n{instance.tail()}"
    assert_clean(instance.output)


def assert_keeps_running_with(instance: Instance, row_id: str, timeout: float = 15, then: str | None = None,
                              **values: str) -> None:
    """The documented line, and the instance still running (``then``: a later line to wait for,
    so that SIGTERM finds the election loop, which handles it, running)."""
    row = ROWS[row_id]
    assert row.exit == "keeps running"
    instance.wait_for(r"\] " + row.pattern(**values).pattern + "$", timeout=timeout)
    if then:
        instance.wait_for(then, timeout=timeout)
    assert instance.process.poll() is None, "it stopped"
    instance.signal(signal.SIGTERM)
    assert instance.wait(5) == 0
    assert_clean(instance.output)


def assert_clean(text: str) -> None:
    assert "Traceback" not in text, text
    for secret in SECRETS:
        assert secret not in text, f"a secret was printed:\n{text}"


