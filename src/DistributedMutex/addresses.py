"""host:port, checked: what the backends' address arguments share."""

from __future__ import annotations

import re

from DistributedMutex.errors import ConfigurationError

_HOST = re.compile(r"^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252}))$")


def host_port(name: str, entry: str, default_port: int | None) -> tuple[str, int]:
    host, sep, port_text = entry.rpartition(":")
    if not sep:
        host, port_text = entry, ""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        raise ConfigurationError(name, f"{entry!r}: write an IPv6 address in brackets, like [::1]:2181")
    if not host or not _HOST.match(host if ":" not in host else f"[{host}]"):
        raise ConfigurationError(name, f"{entry!r} is not host:port")
    if not port_text:
        if default_port is None:
            raise ConfigurationError(name, f"{entry!r} has no port: write host:port")
        return host, default_port
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ConfigurationError(name, f"{entry!r}: the port must be a number from 1 to 65535")
    return host, int(port_text)
