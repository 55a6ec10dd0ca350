"""RedisLeaseBackend's arguments, checked, and the election timing its lease implies.

Stdlib only: the demo checks its settings with these before redis-py is imported. Every check takes
``name``, the argument in the caller's terms (the library's own by default; the demo passes its
settings' names: REDIS_URL...). No message shows a URL's password: ``masked_url`` replaces it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, unquote, urlencode, urlsplit

from DistributedMutex.addresses import host_port
from DistributedMutex.errors import ConfigurationError
from DistributedMutex.timing import ElectionTiming

# The lease, seconds. 5 s by default: a crashed leader's key expires and the next contender leads
# within about that (the "a few seconds"). Below 2 s the renewals (every lease/5) would be
# a few hundred milliseconds apart, too close to a slow network's round trip.
LEASE_RANGE = (2.0, 60.0)
DEFAULT_LEASE_DURATION = 5.0
DEFAULT_KEY_PREFIX = "distributed-mutex:election"
# Redis keys are binary-safe, but these are shown in messages, logs and `redis-cli`: printable,
# no spaces, no glob characters (a `SCAN MATCH prefix*` finds exactly ours).
KEY_PREFIX = re.compile(r"^[A-Za-z0-9._:/@-]{1,200}$")
KEY_PREFIX_RULE = "1-200 letters, digits or . _ : / @ -"
SCHEMES = ("redis", "rediss", "unix")
# Query options of a redis URL that may stay: everything else either overrides the backend's own
# timeouts and retries (socket_timeout, retry_on_timeout, health_check_interval...) or is unknown.
ALLOWED_QUERY = frozenset({"db", "ssl_cert_reqs", "ssl_ca_certs", "ssl_check_hostname", "protocol"})


@dataclass(frozen=True)
class RedisAddress:
    """A checked redis URL: ``url`` as given (with its password) for redis-py, ``masked`` for
    anything shown, and the password, for the filters that keep it out of logs."""

    url: str
    masked: str
    password: str | None
    db: int


def redis_timing(lease_duration: float) -> ElectionTiming:
    """Stop acting a fifth of the lease (at least 0.5 s) before it can end; renew four times in
    what is left (5 s: every 1 s, acting for 4 s after each renewal was sent); look for a free
    lease every second (the pub/sub notice and the expiry timer wake contenders sooner)."""
    margin = max(0.5, lease_duration / 5)
    return ElectionTiming(lease_duration=lease_duration, renew_interval=(lease_duration - margin) / 4,
                          acquire_interval=min(1.0, lease_duration / 2), safety_margin=margin)


def default_call_timeout(lease_duration: float) -> float:
    """Each call's socket timeouts: three quarters of the renew interval (0.75 s with a 5 s lease),
    so that a call that hangs has failed before the next renewal is due."""
    return round(0.75 * redis_timing(lease_duration).renew_interval, 3)


def parse_lease_duration(name: str, value: object) -> float:
    """Seconds within LEASE_RANGE (a number, or its text from a setting)."""
    try:
        if isinstance(value, bool):
            raise TypeError(value)
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigurationError(name, f"must be a number of seconds, got {value!r}") from None
    low, high = LEASE_RANGE
    if not math.isfinite(seconds) or not low <= seconds <= high:
        shown = value.strip() if isinstance(value, str) else f"{seconds:g}"
        raise ConfigurationError(name, f"must be from {low:g} to {high:g} seconds, got {shown}")
    return seconds


def check_call_timeout(name: str, value: object, lease_duration: float) -> float:
    """No call may outlast the renew interval: a renewal stuck on a dead connection must have
    failed (and be retried) before the next one is due."""
    if value is None:
        return default_call_timeout(lease_duration)
    renew = redis_timing(lease_duration).renew_interval
    try:
        if isinstance(value, bool):
            raise TypeError(value)
        seconds = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise ConfigurationError(name, f"must be a number of seconds, got {value!r}") from None
    if not 0 < seconds < renew:  # also refuses nan
        shown = value.strip() if isinstance(value, str) else f"{seconds:g}"
        raise ConfigurationError(name, f"must be above 0 and below the {renew:g} s renew interval of a "
                                       f"{lease_duration:g} s lease, got {shown}")
    return seconds


def check_key_prefix(name: str, value: object) -> str:
    if not isinstance(value, str) or not KEY_PREFIX.match(value):
        raise ConfigurationError(name, f"must be {KEY_PREFIX_RULE} (the election's keys start with it), "
                                       f"got {value!r}")
    return value


def parse_redis_url(name: str, value: object) -> RedisAddress:
    """redis://[[user]:password@]host[:port][/db], rediss://... (TLS) or unix:///path?db=N."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(name, f"must be a URL like redis://127.0.0.1:6379/0, got {value!r}")
    url = value.strip()
    try:
        parts = urlsplit(url)
        password = unquote(parts.password) if parts.password is not None else None
        masked = masked_url(url)
    except ValueError:  # an unparsable port or netloc; the text may hold a password: not quoted
        raise ConfigurationError(name, "is not a URL like redis://[:password@]host:port/db") from None
    if parts.scheme.lower() not in SCHEMES:
        raise ConfigurationError(name, f"{masked!r} must start with redis://, rediss:// (TLS) or unix://")
    if parts.fragment:
        raise ConfigurationError(name, f"{masked!r} has a #fragment: remove it")
    query = parse_qsl(parts.query, keep_blank_values=True)
    unknown = sorted({key for key, _ in query} - ALLOWED_QUERY)
    if unknown:
        raise ConfigurationError(name, f"{masked!r} sets {', '.join(unknown)} in its query: the backend sets its "
                                       f"own timeouts and retries (only {', '.join(sorted(ALLOWED_QUERY))} may be "
                                       "given there)")
    db_texts = [text for key, text in query if key == "db"]
    if parts.scheme.lower() == "unix":
        if not parts.path:
            raise ConfigurationError(name, f"{masked!r} names no socket: write unix:///path/to/redis.sock")
    else:
        netloc = parts.netloc.rpartition("@")[2]
        host_port(name, netloc, default_port=6379)  # the host, and a port from 1 to 65535
        if parts.path not in ("", "/"):
            db_texts.insert(0, parts.path[1:])
    db = 0
    for text in db_texts[:1]:
        if not text.isdigit() or int(text) > 1_000_000:
            raise ConfigurationError(name, f"{masked!r}: the database must be a number like /0, got {text!r}")
        db = int(text)
    return RedisAddress(url=url, masked=masked, password=password or None, db=db)


def masked_url(url: str) -> str:
    """The URL with its password (if any) replaced by ``***``: what messages and logs show (a URL
    without one is shown exactly as given)."""
    parts = urlsplit(url)
    masked = parts
    if parts.query and "password" in parts.query.lower():  # redis-py also reads ?password=
        masked = masked._replace(query=urlencode(
            [(key, "***" if "password" in key.lower() else text)
             for key, text in parse_qsl(parts.query, keep_blank_values=True)], safe="*"))
    if parts.password is not None:
        user = quote(unquote(parts.username or ""), safe="")
        host = parts.netloc.rpartition("@")[2]
        masked = masked._replace(netloc=f"{user}:***@{host}")
    return url if masked == parts else masked.geturl()
