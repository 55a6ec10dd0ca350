"""Mutual TLS for a Raft cluster of demo processes (harness.raft_cluster, the bench's raft group):
a throwaway CA and a certificate per member (make_certificates), the RAFT_TLS_* settings that hand
them to each member, and the TLS relays that let the per-link proxies still read every message.

The proxy on link A->B terminates TLS on both sides (harness.tcpproxy.TlsRelay): towards A it
presents B's certificate, towards B it presents A's, both from the cluster's own CA, which the
harness holds. Members verify exactly as they would without the proxy."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from DistributedMutex.backends.raft.certificates import make_certificates
from DistributedMutex.backends.raft.tls import TlsConfig, load_tls
from harness.tcpproxy import TlsRelay


class ClusterTls:
    def __init__(self, directory: Path, members: Iterable[str]) -> None:
        self.files = make_certificates(directory, members)
        self._configs: dict[str, TlsConfig] = {}

    def env(self, member: str) -> dict[str, str]:
        files = self.files[member]
        return {"RAFT_TLS_CERT": str(files.cert), "RAFT_TLS_KEY": str(files.key), "RAFT_TLS_CA": str(files.ca)}

    def config(self, member: str) -> TlsConfig:
        if member not in self._configs:
            files = self.files[member]
            config = load_tls(member, files.cert, files.key, files.ca, str)
            assert config is not None
            self._configs[member] = config
        return self._configs[member]

    def relay(self, source: str, target: str) -> TlsRelay:
        """For the proxy that ``source`` dials to reach ``target``."""
        return TlsRelay(server=self.config(target).server, client=self.config(source).client)
