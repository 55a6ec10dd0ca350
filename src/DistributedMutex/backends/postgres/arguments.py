"""PostgresLeaseBackend's arguments, checked, and the election timing its lease implies.

No driver is imported here: the demo checks its settings with these before anything connects.
Checks take ``name``, the argument in the caller's terms (see the backend's ``names``).
"""

from __future__ import annotations

import math
import re
from urllib.parse import SplitResult, quote, unquote, urlsplit, urlunsplit

from DistributedMutex.errors import ConfigurationError
from DistributedMutex.timing import ElectionTiming

# A crash fails over within a lease (plus one acquire interval): 5 s by default.
DEFAULT_LEASE_DURATION = 5.0
MIN_LEASE, MAX_LEASE = 2.0, 300.0
# Each statement's statement_timeout, and how long a call may take on the wire before the backend
# gives up on its connection. Below the renew interval, so that a renewal stuck on a dead
# connection is retried on a new one before the leader's deadline.
DEFAULT_CALL_TIMEOUT = 1.0
DEFAULT_TABLE = "distributed_mutex_leases"
MAX_ELECTION_NAME = 200
# A plain identifier, optionally schema-qualified, lower case: written into SQL unquoted (PostgreSQL
# folds unquoted names to lower case, so an upper-case one would name another table than it says).
_TABLE = re.compile(r"[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?")
TABLE_RULE = "a lower-case SQL identifier (letters, digits and _, not starting with a digit), schema.table allowed"
_SCHEMES = ("postgresql", "postgres")


def postgres_timing(lease_duration: float) -> ElectionTiming:
    """The lease's length on the server's clock: renew about three times per lease (5 s: every
    1.5 s), look for a free lease every 0.5 s (one statement), stop acting 1 s before the lease can
    end (a fifth of it for longer leases)."""
    margin = max(1.0, lease_duration / 5)
    return ElectionTiming(lease_duration=lease_duration, renew_interval=(lease_duration - margin) / 2.5,
                          acquire_interval=min(0.5, lease_duration / 4), safety_margin=margin)


def check_lease_duration(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigurationError(name, f"must be a number of seconds from {MIN_LEASE:g} to {MAX_LEASE:g}, "
                                       f"got {value!r}")
    if not MIN_LEASE <= value <= MAX_LEASE:
        raise ConfigurationError(name, f"must be from {MIN_LEASE:g} to {MAX_LEASE:g} seconds, got {value:g}")
    return float(value)


def check_call_timeout(name: str, value: object, renew_interval: float) -> float:
    """Every statement's bound: below the renew interval, so that a stuck renewal is retried in time."""
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or not 0.05 <= value < renew_interval):
        shown = f"{value:g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else repr(value)
        raise ConfigurationError(name, f"must be a number of seconds from 0.05 and below the "
                                       f"{renew_interval:g} s renew interval, got {shown}")
    return float(value)


def check_table(name: str, value: object) -> str:
    if not isinstance(value, str) or not _TABLE.fullmatch(value):
        raise ConfigurationError(name, f"must be {TABLE_RULE}, got {value!r}")
    return value


def check_election(name: str, value: object) -> str:
    if (not isinstance(value, str) or not 1 <= len(value) <= MAX_ELECTION_NAME or not value.isprintable()
            or "\x00" in value):
        raise ConfigurationError(name, f"must be 1-{MAX_ELECTION_NAME} printable characters (the election's "
                                       f"row in the table), got {value!r}")
    return value


def check_url(name: str, value: object) -> str:
    """A libpq URL (postgresql://user:password@host:port/database?options); never echoed whole."""
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(name, "must be a PostgreSQL URL like postgresql://user@host:5432/database, "
                                       "got nothing")
    text = value.strip()
    if "://" not in text:
        raise ConfigurationError(name, "must be a libpq URL like postgresql://user@host:5432/database (key=value "
                                       "connection strings are not taken here)")
    parts = urlsplit(text)
    if parts.scheme.lower() not in _SCHEMES:
        raise ConfigurationError(name, f"must start with postgresql:// (a libpq URL), got {parts.scheme}://")
    try:
        port = parts.port  # ValueError for a port that is no number or out of range
    except ValueError:
        port = 0
    if port == 0 or (port is None and re.search(r":[^/@\]]*$", parts.netloc.rpartition("@")[2] or "")):
        raise ConfigurationError(name, f"{mask_url(text)}: the port must be a number from 1 to 65535")
    if parts.fragment:
        raise ConfigurationError(name, f"{mask_url(text)} must not carry a #fragment")
    return text


def mask_url(url: str) -> str:
    """The URL with its password (and a password= option in its query) shown as ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<a malformed URL>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, sep, _ = userinfo.partition(":")
        netloc = f"{user}{':***' if sep else ''}@{hostport}"
    query = re.sub(r"(?i)(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    if not netloc:  # postgresql:///db (the local socket): urlunsplit would drop the //
        return f"{parts.scheme}://{parts.path}" + (f"?{query}" if query else "")
    return urlunsplit(SplitResult(parts.scheme, netloc, parts.path, query, ""))


def url_password(url: str) -> list[str]:
    """The forms in which the URL's password could show up (for a log filter that masks them)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return []
    forms = [parts.password or ""]
    forms += [unquote(value) for key, value in _query_pairs(parts.query) if key.lower() == "password"]
    forms += [quote(form, safe="") for form in forms]
    return [form for form in dict.fromkeys(forms) if form]


def describe_url(url: str) -> str:
    """host:port/database, for start-up lines (no user, no password)."""
    parts = urlsplit(url)
    host = parts.hostname or "localhost"
    return f"{host}:{parts.port or 5432}/{unquote(parts.path.lstrip('/')) or parts.username or ''}"


def _query_pairs(query: str) -> list[tuple[str, str]]:
    return [(key, value) for key, _, value in (part.partition("=") for part in query.split("&") if part)]
