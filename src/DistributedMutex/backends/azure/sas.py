"""Reading a container SAS URL without ever showing its signature: its parts and its expiry."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit


def url_parts(value: str) -> tuple[str, str, str, str] | None:
    """(scheme, host, path, query) of an http(s) URL with a host; None if it is not one."""
    try:
        parts = urlsplit(value)
        host = parts.hostname or ""
    except ValueError:  # e.g. an unbalanced [ in the host
        return None
    if parts.scheme.lower() not in ("http", "https") or not host:
        return None
    return parts.scheme.lower(), host, parts.path, parts.query


def sas_query(url: str) -> dict[str, str]:
    parts = url_parts(url)
    query = parse_qs(parts[3], keep_blank_values=True) if parts else {}
    return {key.lower(): values[0] for key, values in query.items()}


def sas_url_expiry(url: str) -> datetime | None:
    """When the SAS stops being valid (its se=), if it says and it can be read."""
    return sas_time(sas_query(url).get("se", ""))


def sas_time(text: str) -> datetime | None:
    # Azure writes 2026-11-26T13:31:24Z, sometimes with 7 fractional digits, or a bare date.
    match = re.fullmatch(r"(\d{4}-\d{2}-\d{2})(?:T(\d{2}:\d{2}(?::\d{2})?)(?:\.\d+)?)?Z?", text.strip())
    if not match:
        return None
    try:
        moment = datetime.fromisoformat(f"{match.group(1)}T{match.group(2) or '00:00:00'}")
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc)
