"""The command line: ``python src/DistributedMutex/test.py [--status]``.

Exit codes: 0 after a clean stop (SIGINT/SIGTERM) or a --status that found a leader; 2 for a
configuration error or storage that refuses our credentials; 3 for --status without a leader;
1 when the lease storage cannot be reached for --status.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence

from .app import WeatherApp
from .azure_lease import AzureBlobLeaseBackend
from .backend import Identity
from .config import Settings, free_tier_warning, load_settings
from .errors import BackendError, ConfigurationError, StorageRejectedError
from .journal import LeadershipJournal
from .mutex import DistributedMutex
from .store import WeatherStore
from .weather import OpenWeatherClient

EXIT_OK, EXIT_UNAVAILABLE, EXIT_CONFIG, EXIT_NO_LEADER = 0, 1, 2, 3
log = logging.getLogger("DistributedMutex")


class RedactSecrets(logging.Filter):
    """Last line of defence: no secret value reaches a log line, whatever produced it."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self._secrets = sorted(set(secrets), key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, None
        for secret in self._secrets:
            message = message.replace(secret, "***")
        record.msg, record.args = message, None
        return True


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        f"%(asctime)s %(levelname)s [{settings.instance_id}] %(message)s"))
    handler.addFilter(RedactSecrets(settings.secrets()))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # The SDKs log every request at INFO (headers and all); keep them to warnings.
    for noisy in ("azure", "urllib3", "mysql.connector"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def build_backend(settings: Settings) -> AzureBlobLeaseBackend:
    try:
        return AzureBlobLeaseBackend(
            settings.connection_string, settings.container_name, settings.blob_name,
            lease_duration=settings.lease_duration, api_version=settings.api_version,
        )
    except ValueError:
        # The SDK's message may quote the connection string: say what, not the value.
        raise ConfigurationError("AZURE_STORAGE_CONNECTION_STRING",
                                 "is not accepted by the Azure SDK") from None


def status(settings: Settings) -> int:
    """Print the current leader as one JSON line."""
    backend = build_backend(settings)
    try:
        record = backend.read_leader()
    except StorageRejectedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BackendError as exc:
        print(f"error: cannot read the lease: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    leading = record is not None and record.is_held
    print(json.dumps({
        "backend": backend.name,
        "leader_id": record.leader_id if leading else None,
        "leader_host": record.host if leading else None,
        "leader_pid": record.pid if leading else None,
        "term": record.term if record else 0,
        "acquired_at": record.acquired_at.isoformat() if leading and record.acquired_at else None,
        "lease_state": record.lease_state if record else None,
        "last_leader_id": record.leader_id if record else None,
    }))
    return EXIT_OK if leading else EXIT_NO_LEADER


def open_journal(settings: Settings) -> LeadershipJournal | None:
    if settings.leadership_journal is None:
        return None
    try:
        return LeadershipJournal(settings.leadership_journal)
    except OSError as exc:
        raise ConfigurationError("LEADERSHIP_JOURNAL", f"cannot be opened for appending: {exc.strerror}") from None


def run_demo(settings: Settings) -> int:
    api_key = settings.require_api_key()
    backend = build_backend(settings)
    store = WeatherStore(settings.mysql)
    client = OpenWeatherClient(api_key, settings.openweather_url)
    app = WeatherApp(client, store, settings.weather_cities, fetch_interval=settings.fetch_interval,
                     read_interval=settings.read_interval, buffer_size=settings.reading_buffer_size)
    timing = settings.timing()
    journal = open_journal(settings)
    mutex = DistributedMutex(app.lead, app.work, backend=backend, identity=Identity(settings.instance_id),
                             timing=timing, stall_timeout=settings.leader_stall_timeout, journal=journal)
    log.info("instance %s starting: lease on %s/%s (lease %g s, renew %g s, acquire %g s);"
             " settings from %s", settings.instance_id, settings.container_name, settings.blob_name,
             timing.lease_duration, timing.renew_interval, timing.acquire_interval,
             ", ".join(settings.sources) or "defaults")
    warning = free_tier_warning(settings)
    if warning:
        log.warning("%s", warning)
    try:
        mutex.run()
    except StorageRejectedError as exc:
        log.error("cannot go on: %s", exc)
        return EXIT_CONFIG
    finally:
        store.close()
        client.close()
        if journal is not None:
            journal.close()
    log.info("stopped")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python src/DistributedMutex/test.py",
        description="Leader election on an Azure blob lease: the leader stores the weather in "
                    "MySQL, the workers print it. Settings come from the environment, .env or "
                    "constant.py (see README.md).")
    parser.add_argument("--status", action="store_true",
                        help="print the current leader and term as one JSON line and exit "
                             "(0 with a leader, 3 without)")
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings)
        return status(settings) if args.status else run_demo(settings)
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
