"""The command line of ``distributed-mutex``: its own options, and the election's settings as flags.

Every setting of settings/election.py (ELECTION_BACKEND, ZOOKEEPER_HOSTS, ...) is also a flag
(``--election-backend``, ``--zookeeper-hosts``); a flag wins over the environment. A bad value is
refused in one line naming what the user wrote: the flag if it came from one, else the variable.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NoReturn

from DistributedMutex.cli.wrapper import ON_EXIT, OnExit, RunOptions
from DistributedMutex.errors import ConfigurationError
from DistributedMutex.settings.election import DEFAULTS, BackendSettings, read_election, secrets_of
from DistributedMutex.settings.getter import Getter

# The program's own settings, besides the election's.
OWN_DEFAULTS: dict[str, str | None] = {"INSTANCE_ID": None, "LOG_LEVEL": "INFO"}
SETTINGS = {**DEFAULTS, **OWN_DEFAULTS}
_INSTANCE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,63}$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def flag(setting: str) -> str:
    return "--" + setting.lower().replace("_", "-")


@dataclass(frozen=True)
class Parsed:
    election: BackendSettings
    getter: Getter
    instance_id: str
    log_level: str
    status: bool = False
    watch: bool = False
    command: tuple[str, ...] = ()
    options: RunOptions = field(default_factory=lambda: RunOptions(("true",)))
    secrets: list[str] = field(default_factory=list)


class _Parser(argparse.ArgumentParser):
    """argparse, but a mistake is one line ("configuration error: ..."), exit 2, like a bad setting."""

    def error(self, message: str) -> NoReturn:
        raise ConfigurationError("arguments", message)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="distributed-mutex", description="Leader election on the command line (docs/run.md).")
    commands = parser.add_subparsers(dest="action", required=True, parser_class=_Parser)
    run = commands.add_parser("run", help="run a command only while this instance leads",
                              usage="distributed-mutex run [options] -- CMD ARGS...")
    run.add_argument("--status", action="store_true", help="print who leads as one JSON line and exit")
    run.add_argument("--on-exit", choices=ON_EXIT, default="restart",
                     help="when the command exits by itself: start it again with backoff (restart, the default), "
                          "give the lease up and contend again (release), or exit with its status (stop)")
    run.add_argument("--grace", type=_seconds("--grace"), default=10.0,
                     help="seconds from SIGTERM to SIGKILL when leadership ends (the local deadline comes first)")
    run.add_argument("--kill-margin", type=_seconds("--kill-margin"), default=None,
                     help="SIGKILL the command this many seconds before the local deadline (default: half the "
                          "backend's safety margin, at most 0.5 s)")
    run.add_argument("command", nargs="*", help="the command and its arguments, after --")
    status = commands.add_parser("status", help="print who leads as one JSON line")
    status.add_argument("--watch", action="store_true", help="one line per change of leader, until interrupted")
    for sub in (run, status):
        group = sub.add_argument_group("election settings (or the environment variables of the same names)")
        for setting in SETTINGS:
            group.add_argument(flag(setting), dest=setting, metavar=setting, default=None)
    return parser


def parse(argv: Sequence[str], environ: Mapping[str, str]) -> Parsed:
    args = _parser().parse_args(list(argv))
    flags = {name: getattr(args, name) for name in SETTINGS if getattr(args, name) is not None}
    raw = {**{name: value for name, value in environ.items() if name in SETTINGS}, **flags}
    get = Getter(raw, SETTINGS)
    status = args.action == "status" or bool(getattr(args, "status", False))
    try:
        instance_id = get("INSTANCE_ID", _instance_id, default=_default_instance_id())
        election = read_election(get, instance_id, member=not status)
        log_level = get("LOG_LEVEL", _log_level)
    except ConfigurationError as exc:
        if exc.setting in flags:  # say it as the user wrote it
            raise ConfigurationError(flag(exc.setting), exc.rule) from None
        raise
    command: tuple[str, ...] = tuple(getattr(args, "command", ()) or ())
    on_exit: OnExit = getattr(args, "on_exit", "restart")
    if not status and not command:
        raise ConfigurationError("arguments", "no command given: distributed-mutex run [options] -- CMD ARGS...")
    options = RunOptions(command or ("true",), on_exit=on_exit, grace=getattr(args, "grace", 10.0),
                         kill_margin=getattr(args, "kill_margin", None))
    return Parsed(election=election, getter=get, instance_id=instance_id, log_level=log_level, status=status,
                  watch=bool(getattr(args, "watch", False)), command=command, options=options,
                  secrets=secrets_of(election))


def _seconds(name: str) -> Callable[[str], float]:
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise ConfigurationError(name, f"must be a number of seconds, got {value!r}") from None
        if not math.isfinite(number) or not 0 <= number <= 3600:
            raise ConfigurationError(name, f"must be from 0 to 3600 seconds, got {value}")
        return number
    return parse


def _instance_id(name: str, value: str) -> str:
    text = value.strip()
    if not _INSTANCE_ID.match(text):
        raise ConfigurationError(name, "must be 1-64 letters, digits or . _ : @ -, starting with a letter or digit, "
                                       f"got {text!r}")
    return text


def _log_level(name: str, value: str) -> str:
    text = value.strip().upper()
    if text not in _LOG_LEVELS:
        raise ConfigurationError(name, f"must be one of {', '.join(_LOG_LEVELS)}, got {value.strip()!r}")
    return text


def _default_instance_id() -> str:
    host = re.sub(r"[^A-Za-z0-9._-]", "-", socket.gethostname())[:50] or "host"
    return f"{host}-{os.getpid()}"
