"""Raft leader election among the instances themselves: no service, no third-party dependency.

    core.py      the pure state machine (no I/O, no clock): tick(now), step(message, now)
    messages.py  the messages and their wire form
    storage.py   the term and vote, durably in <data_dir>/<node_id>.json
    transport.py TCP between peers (the outgoing links), and the status request
    tls.py       mutual TLS between peers: the certificate, key and CA checked, the ssl contexts
    certificates.py  a throwaway CA and per-peer certificates (needs the ``certificates`` extra)
    listener.py  the incoming side: one selector thread, every connection held to limits
    limits.py    those limits, rate-limited warnings, the open-files limit they need
    node.py      a running peer: one thread drives the core
    backend.py   RaftBackend, the ElectionBackend the loop talks to
"""

from typing import TYPE_CHECKING, Any

from DistributedMutex.backends.raft.backend import RaftBackend
from DistributedMutex.backends.raft.tls import TlsConfig

if TYPE_CHECKING:
    from DistributedMutex.backends.raft.certificates import PeerCertificate, make_certificates


def __getattr__(name: str) -> Any:
    # Loaded on first use, not with the package: `python -m DistributedMutex.backends.raft.certificates`
    # must find the module not yet imported (runpy warns otherwise).
    if name in ("PeerCertificate", "make_certificates"):
        from DistributedMutex.backends.raft import certificates

        return getattr(certificates, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["PeerCertificate", "RaftBackend", "TlsConfig", "make_certificates"]
