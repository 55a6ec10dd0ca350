"""The command line: ``python src/DistributedMutex/test.py [--status]``.

Exit codes of the demo: 0 after a clean stop (SIGINT/SIGTERM); 2 for a configuration error,
storage that refuses our credentials, no Azure AD token at start, MySQL refusing the login or a
privilege at start, or an SQLite file that cannot be used. docs/bad-input.md lists every message.

Exit codes of --status (README.md, docs/bad-input.md; tests/test_status.py checks each):
    0  a leader holds the lease: its JSON line on stdout
    3  nobody leads (nobody ever did, or the last leader's lease ran out): the JSON line too
    1  the backend cannot be asked (storage, ZooKeeper or every Raft peer unreachable): one line
       on stderr, "error: cannot read who leads: ..."
    2  a bad setting ("configuration error: ..."), or the storage refusing the credentials
       ("error: ...")
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn

from distributed_mutex_demo.app import WeatherApp
from distributed_mutex_demo.config import OPEN_METEO, Settings, free_tier_warning, load_settings
from distributed_mutex_demo.election_backends import CHOICES, build_backend
from distributed_mutex_demo.errors import StoreAccessError, StoreUnavailableError
from distributed_mutex_demo.open_meteo import OpenMeteoClient
from distributed_mutex_demo.redaction import RedactSecrets, all_secrets
from distributed_mutex_demo.stores import Store, open_store
from distributed_mutex_demo.weather import OpenWeatherClient, WeatherClient
from DistributedMutex.backend import Identity
from DistributedMutex.errors import BackendError, ConfigurationError, StorageRejectedError
from DistributedMutex.journal import LeadershipJournal
from DistributedMutex.mutex import DistributedMutex

if TYPE_CHECKING:
    from distributed_mutex_demo.weather_metrics import WeatherMetrics

EXIT_OK, EXIT_UNAVAILABLE, EXIT_CONFIG, EXIT_NO_LEADER = 0, 1, 2, 3
log = logging.getLogger("distributed_mutex_demo")


def configure_logging(settings: Settings) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(
        f"%(asctime)s %(levelname)s [{settings.instance_id}] %(message)s"))
    handler.addFilter(RedactSecrets(all_secrets(settings)))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(settings.log_level)
    # The SDKs log every request at INFO (headers and all); keep them to warnings.
    for noisy in ("azure", "msal", "urllib3", "mysql.connector"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    # azure-identity warns in many lines (with tracebacks at DEBUG) when it gets no token: we say it
    # in one line, and log its text at DEBUG ourselves.
    logging.getLogger("azure.identity").setLevel(logging.CRITICAL)


def build_weather_client(settings: Settings) -> WeatherClient:
    """The chosen provider's client; ConfigurationError if it lacks what it needs (a key)."""
    settings.check_weather_provider()
    if settings.weather_provider == OPEN_METEO:
        return OpenMeteoClient(settings.open_meteo_geocoding_url, settings.open_meteo_forecast_url)
    return OpenWeatherClient(settings.require_api_key(), settings.openweather_url)


def weather_source(settings: Settings, client: WeatherClient) -> str:
    """Where the readings come from, for the start-up line. With WEATHER_SIMULATION=auto the
    station is a fallback, announced when it takes over (one line), not here."""
    if settings.weather_simulation == "always":
        return f"the simulated station (WEATHER_SIMULATION=always; {client.name} is not asked)"
    return client.name


def check_store(store: Store) -> None:
    """Open the store once at start: a refused login or privilege, or an SQLite file that cannot be
    used, is a configuration error (raised); an unreachable server may come back, so that is one
    warning and the program goes on."""
    try:
        store.check_access()
    except StoreAccessError:
        raise
    except StoreUnavailableError as exc:
        log.warning("%s at start: going on (the leader keeps its readings, the workers retry)", exc)


def status(settings: Settings) -> int:
    """Print the current leader as one JSON line."""
    backend = build_backend(settings)
    try:
        record = backend.read_leader()
    except StorageRejectedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BackendError as exc:
        print(f"error: cannot read who leads: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    finally:
        backend.close()
    leader = record if record is not None and record.is_held else None
    print(json.dumps({
        "backend": backend.name,
        "leader_id": leader.instance_id if leader else None,
        "leader_host": leader.host if leader else None,
        "leader_pid": leader.pid if leader else None,
        "term": record.term if record else 0,
        "acquired_at": leader.acquired_at.isoformat() if leader and leader.acquired_at else None,
        "lease_state": record.lease_state if record else None,
        "last_leader_id": record.instance_id if record else None,
    }))
    return EXIT_OK if leader else EXIT_NO_LEADER


def open_journal(settings: Settings) -> LeadershipJournal | None:
    if settings.leadership_journal is None:
        return None
    try:
        return LeadershipJournal(settings.leadership_journal)
    except OSError as exc:
        raise ConfigurationError("LEADERSHIP_JOURNAL", f"cannot be opened for appending: {exc.strerror}") from None


def run_with_metrics(settings: Settings) -> int:
    """The demo, with /metrics and /healthz when METRICS_PORT is set. Listening starts first, so
    that a port in use stops the program at once, like any other mistake in the settings."""
    if settings.metrics_port is None:
        return run_demo(settings)
    from distributed_mutex_demo.metrics_server import MetricsServer  # prometheus_client only when asked for
    from distributed_mutex_demo.weather_metrics import WeatherMetrics

    metrics = WeatherMetrics(settings.instance_id, settings.election_backend)
    server = MetricsServer(metrics, settings.metrics_host, settings.metrics_port).start()
    log.info("metrics on http://%s/metrics, health on http://%s/healthz%s", server.address, server.address,
             " (all interfaces)" if server.all_interfaces else "")
    try:
        return run_demo(settings, metrics)
    finally:
        server.close()


def run_demo(settings: Settings, metrics: WeatherMetrics | None = None) -> int:
    client = build_weather_client(settings)
    backend = build_backend(settings)
    store = open_store(settings)
    try:
        check_store(store)
    except StoreAccessError as exc:
        store.close()
        client.close()
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    app = WeatherApp(client, store, settings.weather_cities, fetch_interval=settings.fetch_interval,
                     read_interval=settings.read_interval, buffer_size=settings.reading_buffer_size,
                     on_stored=metrics.stored if metrics is not None else None,
                     simulation=settings.weather_simulation, backend=settings.election_backend)
    choice = CHOICES[settings.election_backend]
    journal = open_journal(settings)
    # The blob lease's timing comes from the settings; the other backends' from the backend itself.
    mutex = DistributedMutex(app.lead, app.work, backend=backend, identity=Identity(settings.instance_id),
                             timing=settings.timing(), stall_timeout=settings.leader_stall_timeout, journal=journal,
                             observer=metrics)
    log.info("instance %s starting: %s; settings from %s", settings.instance_id, choice.describe(settings),
             ", ".join(settings.sources) or "defaults")
    if settings.ignored:
        log.warning("ignoring %s: %s only for another ELECTION_BACKEND than %s", ", ".join(settings.ignored),
                    "it is" if len(settings.ignored) == 1 else "they are", settings.election_backend)
    log.info("weather from %s, readings stored in %s", weather_source(settings, client), store.description)
    warning = free_tier_warning(settings)
    if warning:
        log.warning("%s", warning)
    try:
        choice.check(backend)
        mutex.run()
    except StorageRejectedError as exc:
        log.error("cannot go on: %s", exc)
        return EXIT_CONFIG
    finally:
        backend.close()
        store.close()
        client.close()
        if journal is not None:
            journal.close()
    log.info("stopped")
    return EXIT_OK


def _program_name() -> str:
    """How the user started it, for --help: the command, the module, or the design card's script."""
    started = os.path.basename(sys.argv[0])
    if started.endswith("-demo"):
        return started
    if started == "__main__.py":
        return "python -m distributed_mutex_demo"
    return "python src/DistributedMutex/test.py"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=_program_name(),
        description="The weather demo of leader election: run N copies; one leads (on an Azure blob lease, "
                    "ZooKeeper or Raft: ELECTION_BACKEND) and stores the weather in SQLite or MySQL under its "
                    "term, the others print the newest rows. Settings come from the environment, .env or "
                    "constant.py (docs/configuration.md).")
    parser.add_argument("--status", action="store_true",
                        help="print the current leader and term as one JSON line and exit: 0 with a "
                             "leader, 3 without, 1 when the backend cannot be reached, 2 for a bad setting "
                             "or refused credentials")
    args = parser.parse_args(argv)
    try:
        settings = load_settings(member=not args.status)
        configure_logging(settings)
        return status(settings) if args.status else run_with_metrics(settings)
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def run(argv: Sequence[str] | None = None) -> NoReturn:
    """The program's entry point (``distributed-mutex-demo``, test.py): ``main``, then exit at once.

    A storage or HTTP call abandoned in a daemon thread must not print at interpreter teardown,
    hence ``os._exit`` after flushing what was said."""
    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
