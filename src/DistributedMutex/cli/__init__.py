"""The library's command line, ``distributed-mutex`` (docs/run.md):

    distributed-mutex run [options] -- CMD ARGS...    run CMD only while this instance leads
    distributed-mutex run --status                    who leads, as one JSON line
    distributed-mutex status [--watch]                the same (--watch: one line per change)

The election's settings are the demo's (ELECTION_BACKEND, ZOOKEEPER_HOSTS, RAFT_PEERS, ...), from
the environment or as the matching flags (``--zookeeper-hosts``), a flag winning over the
environment; a bad one stops the program with one line naming it.

Exit codes:
    0    run: stopped by SIGTERM/SIGINT (the command, if it ran, exited first), or --on-exit stop
         and the command exited 0; status: a leader holds the lease
    1    status: the backend cannot be asked (unreachable)
    2    a bad setting or flag ("configuration error: ..."), or the storage refusing the credentials
    3    status: nobody leads
    126  the command is not executable; 127: the command is not found (checked before contending)
    N    run --on-exit stop: the command's own exit status (128+S when killed by signal S)

Nothing here imports a third-party package until the chosen backend is built.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from typing import NoReturn

from DistributedMutex.backend import Identity
from DistributedMutex.cli.options import Parsed, parse
from DistributedMutex.errors import BackendError, ConfigurationError, StorageRejectedError

EXIT_OK, EXIT_UNAVAILABLE, EXIT_CONFIG, EXIT_NO_LEADER = 0, 1, 2, 3
log = logging.getLogger("DistributedMutex.run")


class _Redact(logging.Filter):
    """No secret (a password in a URL, an account key) reaches a log line, whatever wrote it."""

    def __init__(self, secrets: Sequence[str]) -> None:
        super().__init__()
        self._secrets = sorted(set(secrets), key=len, reverse=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if self._secrets:
            message = record.getMessage()
            for secret in self._secrets:
                message = message.replace(secret, "***")
            record.msg, record.args = message, None
        return True


def _configure_logging(level: str, instance_id: str, secrets: Sequence[str]) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(f"%(asctime)s %(levelname)s [{instance_id}] %(message)s"))
    handler.addFilter(_Redact(secrets))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("azure", "kazoo", "urllib3"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def status(parsed: Parsed) -> int:
    """Print who leads as one JSON line (with --watch: one per change, until interrupted)."""
    from DistributedMutex.settings.election import build_backend
    from DistributedMutex.watching import LeaderObserver

    observer = LeaderObserver(build_backend(parsed.election, parsed.secrets))
    try:
        if parsed.watch:
            for leader in observer.changes():
                print(json.dumps(_status_json(leader)), flush=True)
            return EXIT_OK
        leader = observer.current()
    except StorageRejectedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except BackendError as exc:
        print(f"error: cannot read who leads: {exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    except KeyboardInterrupt:
        return EXIT_OK
    finally:
        observer.close()
    print(json.dumps(_status_json(leader)))
    return EXIT_OK if leader.leading else EXIT_NO_LEADER


def _status_json(leader: object) -> dict[str, object]:
    from DistributedMutex.watching import ObservedLeader

    assert isinstance(leader, ObservedLeader)
    # The demo's --status fields, so that one script reads both.
    return {"backend": leader.backend, "leader_id": leader.instance_id, "leader_host": leader.host,
            "leader_pid": leader.pid, "term": leader.term,
            "acquired_at": leader.since.isoformat() if leader.since is not None else None}


def run_command(parsed: Parsed, environ: Mapping[str, str]) -> int:
    from DistributedMutex.cli.wrapper import CommandRunner, check_command
    from DistributedMutex.settings.election import build_backend, check_at_start, election_timing, ignored_settings

    problem = check_command(parsed.command, environ)
    if problem is not None:
        print(f"error: cannot start the command: {problem[1]}", file=sys.stderr)
        return problem[0]
    backend = build_backend(parsed.election, parsed.secrets)
    try:
        runner = CommandRunner(backend, Identity(parsed.instance_id), election_timing(parsed.election),
                               parsed.options, environ)
        ignored = ignored_settings(parsed.getter, parsed.election)
        if ignored:
            log.warning("ignoring %s: set for another ELECTION_BACKEND than %s", ", ".join(ignored), backend.name)
        log.info("instance %s contending on %s to run: %s", parsed.instance_id, backend.name,
                 " ".join(parsed.command))
        check_at_start(backend)
        return runner.run()
    except StorageRejectedError as exc:
        log.error("cannot go on: %s", exc)
        return EXIT_CONFIG
    finally:
        backend.close()


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    environ = os.environ if environ is None else environ
    try:
        parsed = parse(sys.argv[1:] if argv is None else argv, environ)
        _configure_logging(parsed.log_level, parsed.instance_id, parsed.secrets)
        if parsed.status:
            return status(parsed)
        return run_command(parsed, environ)
    except ConfigurationError as exc:
        print(f"configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG


def run(argv: Sequence[str] | None = None) -> NoReturn:
    """The console script ``distributed-mutex``: ``main``, then exit at once (a storage call
    abandoned in a daemon thread must not print at interpreter teardown)."""
    code = main(argv)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
